#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Deferred annotations: targets may run a Python older than 3.10 (no "str | None" at runtime).
from __future__ import annotations

DOCUMENTATION = r"""
module: vllm_container
short_description: Run the vLLM OpenAI server container, wait until it serves, check its memory
version_added: 1.0.0
description:
  - Creates and starts a vLLM OpenAI-compatible server container with the Docker SDK for Python,
    from typed options for the C(docker run) flags and the tuned vLLM engine flags.
  - Builds the vLLM command line for the image's vLLM version (O(vllm_version), else the image's
    labels, its C(VLLM_VERSION) environment variable or its tag). A flag that version no longer
    has (C(--swap-space) from 0.18, C(--tokenizer-pool-size) from 0.10.0, C(--rope-scaling) from
    0.11.1) is dropped with a warning or refused (O(on_unsupported_flag)); O(rope_scaling) becomes
    C(--hf-overrides) where the version needs it. Nothing is passed blind into an argparse error.
  - Compares the image's CUDA floor (its C(NVIDIA_REQUIRE_CUDA)) with the host driver's CUDA
    version (O(host_cuda_version), else C(nvidia-smi)) before anything starts, and fails with a
    message that names both.
  - Idempotent. The desired container (image id, arguments, mounts, environment, labels, ports,
    GPUs, CPU set, ulimits, IPC, restart policy) is compared with the existing one, ignoring what
    the engine fills in. Unchanged means C(changed=false) and no restart; a difference means the
    container is recreated. Check mode and C(--diff) show what would change.
  - After a start it follows the container log and polls C(/health) and C(/v1/models) until the
    server answers and lists every O(served_model_name), or O(ready_timeout) passes. A fatal log
    line, the container exiting, or C(/health) answering what a dead engine answers on that vLLM
    version (500 on 0.9 and 0.10, 503 from 0.11) ends the wait at once, and the module fails
    with a classified reason (RV(kind)) and the lines that prove it (RV(proof)).
  - Request logs are never failures - vLLM 0.8.5 logs every prompt, and a prompt may quote any
    error message. A container that was already running is judged by its probes and the startup
    section of its log (the lines up to the ready line) only.
  - On vLLM before 0.9 with the V1 engine C(/health) answers 200 even when the engine is dead;
    O(smoke_test) is what proves that such a server answers.
  - Reads the memory report vLLM logs (KV cache, weights, blocks, concurrency, per rank),
    cross-checks it with C(vllm:cache_config_info) on C(/metrics), derives what the log lacks,
    and compares it with the operator's floors in O(expect).
  - When a changed configuration fails to become ready or misses a floor, the previous container
    (stopped and renamed C(<name>-llmops-previous) before the new one started) is restored and
    started again (O(rollback)). On success the previous container is removed.
author:
  - llmops.gpu_serving contributors
requirements:
  - Docker SDK for Python (C(docker)) 5.0 or later on the target.
  - A Docker engine with API 1.40 or later (GPU device requests).
options:
  name:
    description:
      - Container name.
    type: str
    required: true
  state:
    description:
      - V(started) creates the container when needed, starts it, waits until it serves and
        verifies the memory budget.
      - V(present) creates the container when missing or different, without starting it.
      - V(stopped) does what V(present) does and stops the container.
      - V(absent) removes the container (and a leftover C(<name>-llmops-previous)).
      - V(committed) removes the previous container that O(previous=keep) left parked, and
        touches nothing else (the second step of a cluster's change, once every member is
        verified).
      - V(rolled_back) puts the parked previous container back - removes O(name), renames
        C(<name>-llmops-previous) to O(name), starts it with O(restart_policy) and waits until
        it serves (a follower - until it joined), probing the port it publishes and judging it
        by its own command line (its layout and served names). Without a parked container it
        removes O(name), so a failed first deploy leaves nothing running. Check mode reports
        what it would do.
    type: str
    choices: [absent, present, stopped, started, committed, rolled_back]
    default: started
  image:
    description:
      - The vLLM OpenAI server image, such as C(vllm/vllm-openai:v0.8.5). Required unless
        O(state=absent).
    type: str
  pull:
    description:
      - V(missing) pulls the image when it is not on the host, V(always) pulls before every run
        (the container is recreated when the pulled image differs), V(never) fails when it is
        missing.
    type: str
    choices: [missing, always, never]
    default: missing
  docker_host:
    description:
      - Docker daemon URL. By default E(DOCKER_HOST), else the local socket.
    type: str
  runtime:
    description:
      - Container runtime (C(--runtime)), such as V(nvidia). Empty uses the daemon's default.
    type: str
  gpus:
    description:
      - GPUs given to the container (C(--gpus)) - V(all), a count such as V(2), or devices
        such as V(device=0,1). Empty requests no GPU.
    type: str
    default: all
  model_host_path:
    description:
      - Model directory on the host, bind-mounted at O(model_container_path).
    type: path
  model_container_path:
    description:
      - Mount point of the model inside the container; the default for O(model).
    type: str
  model_read_only:
    description:
      - Mount the model directory read-only. The seed deployment mounts it read-write.
    type: bool
    default: false
  compile_cache_host_path:
    description:
      - Host directory mounted read-write at O(compile_cache_container_path), so that vLLM's
        compile caches (C(torch_compile_cache), Triton and FlashInfer kernels) survive a
        recreated container and the next start does not compile again. Empty mounts nothing.
      - Docker creates the directory when it is missing.
    type: path
  compile_cache_container_path:
    description:
      - Where vLLM keeps its caches inside the container (C(~/.cache/vllm) of the user the
        image runs as; C(VLLM_CACHE_ROOT) moves it).
    type: str
    default: /root/.cache/vllm
  port:
    description:
      - Host port published for O(container_port). V(0) publishes nothing.
    type: int
    default: 8000
  container_port:
    description:
      - Port the server listens on inside the container (vLLM's default is 8000; another value
        is passed as C(--port)).
    type: int
    default: 8000
  bind_address:
    description:
      - Host address the port is published on. V(0.0.0.0) publishes on every address.
    type: str
    default: 127.0.0.1
  probe_host:
    description:
      - Address the module polls the server on. By default O(bind_address), or V(127.0.0.1)
        when that is V(0.0.0.0).
    type: str
  cpuset_cpus:
    description:
      - CPUs the container may use (C(--cpuset-cpus)), such as V(0-55). Empty does not restrict.
    type: str
  ulimits:
    description:
      - Ulimits by name (C(--ulimit name=value)); an integer (V(-1) is unlimited) or
        C(soft:hard).
    type: dict
  ipc_mode:
    description:
      - IPC namespace (C(--ipc)), such as V(host). Empty uses the daemon's default.
    type: str
  shm_size:
    description:
      - Size of C(/dev/shm) (C(--shm-size)), such as V(16g). Empty uses the daemon's default.
    type: str
  restart_policy:
    description:
      - Restart policy (C(--restart)).
    type: str
    choices: ["no", always, unless-stopped, on-failure]
    default: always
  stop_timeout:
    description:
      - Seconds Docker waits after SIGTERM before it kills the container when stopping it.
    type: int
    default: 30
  env:
    description:
      - Environment variables of the container. Variables whose name contains TOKEN, KEY,
        SECRET or PASSWORD are masked in the diff.
    type: dict
  labels:
    description:
      - Labels of the container. The module adds C(llmops.gpu_serving.vllm_container=1).
    type: dict
  model:
    description:
      - Model to serve (C(--model), or the positional model of C(vllm serve)). By default
        O(model_container_path).
    type: str
  served_model_name:
    description:
      - Names clients request (C(--served-model-name)); readiness waits until C(/v1/models) lists
        all of them. Empty lists the model path as vLLM does by default.
    type: list
    elements: str
  tensor_parallel_size:
    description:
      - C(--tensor-parallel-size); at most the GPUs the container sees, when that is known.
    type: int
  dtype:
    description:
      - C(--dtype).
    type: str
    choices: [auto, half, float16, bfloat16, float, float32]
  max_model_len:
    description:
      - C(--max-model-len).
    type: int
  max_num_batched_tokens:
    description:
      - C(--max-num-batched-tokens).
    type: int
  gpu_memory_utilization:
    description:
      - C(--gpu-memory-utilization), greater than 0 and at most 1.
    type: float
  block_size:
    description:
      - C(--block-size). vLLM up to 0.11 accepts 1, 8, 16, 32, 64 or 128 only.
    type: int
  kv_cache_dtype:
    description:
      - C(--kv-cache-dtype), such as V(fp8) (one byte per element, twice the tokens of a 16-bit
        cache). Not passed when unset; vLLM's default is V(auto), the model's dtype.
    type: str
    choices: [auto, fp8, fp8_e4m3, fp8_e5m2]
  enable_chunked_prefill:
    description:
      - V(true) passes C(--enable-chunked-prefill); V(false) passes nothing (vLLM's own default,
        which is on in the V1 engine).
    type: bool
    default: false
  swap_space:
    description:
      - C(--swap-space) in GiB per GPU. Removed in vLLM 0.18 (see O(on_unsupported_flag)).
    type: float
  tokenizer_pool_size:
    description:
      - C(--tokenizer-pool-size). Removed in vLLM 0.10.0 (see O(on_unsupported_flag)).
    type: int
  disable_custom_all_reduce:
    description:
      - V(true) passes C(--disable-custom-all-reduce).
    type: bool
    default: false
  rope_scaling:
    description:
      - RoPE scaling as a dict, passed as compact JSON with C(--rope-scaling) before vLLM 0.11.1
        and inside C(--hf-overrides) (under the key C(rope_scaling)) from 0.11.1 on.
    type: dict
  api_key:
    description:
      - API key clients must send (C(--api-key)); the module's probes send it too. Masked in the
        returned arguments and the diff.
    type: str
  extra_args:
    description:
      - Further vLLM arguments, appended as given. A flag that a typed option above sets is
        refused here; a flag the image's version removed is handled as O(on_unsupported_flag)
        says.
    type: list
    elements: str
    default: []
  vllm_version:
    description:
      - vLLM version of the image, such as V(0.8.5). By default read from the image - label
        C(vllm.version), the OCI version label of an image titled vLLM, C(VLLM_VERSION), the
        tag, and for an image none of them names (a digest-only reference, C(:latest), a private
        tag) the vLLM package installed in it (a throwaway C(python3) container without
        network). The module fails when it is needed and cannot be told.
    type: str
  on_unsupported_flag:
    description:
      - What a flag the image's vLLM version does not have does - V(warn) drops it and warns,
        V(fail) refuses to start.
    type: str
    choices: [warn, fail]
    default: warn
  cuda_check:
    description:
      - Compare the image's C(NVIDIA_REQUIRE_CUDA) with the host's CUDA version before starting.
    type: bool
    default: true
  host_cuda_version:
    description:
      - CUDA version the host driver supports (the C(CUDA Version) of nvidia-smi). By default
        read from O(nvidia_smi_path) when it exists.
    type: str
  host_driver_version:
    description:
      - Host driver version, for the image's forward-compatibility exceptions. By default read
        from nvidia-smi when it exists.
    type: str
  host_gpu_brand:
    description:
      - GPU brand as the NVIDIA Container Toolkit names it (V(tesla), V(geforce), V(quadro),
        V(nvidia), ...). Only needed when the host CUDA version is below the image's floor and
        the image lists forward-compatibility exceptions for the host's driver branch.
    type: str
  host_gpu_count:
    description:
      - GPUs on the host, to check O(tensor_parallel_size) against O(gpus=all). By default
        counted by nvidia-smi when it exists.
    type: int
  nvidia_smi_path:
    description:
      - nvidia-smi binary used for the host facts above. By default looked up in E(PATH).
    type: path
  ready_timeout:
    description:
      - Seconds to wait until the server serves. A fatal log line or the container exiting ends
        the wait earlier.
    type: int
    default: 900
  expect:
    description:
      - Floors and ceilings on the memory report vLLM logs (the minimum over ranks for capacity,
        the maximum for weights).
      - A figure the log does not give is derived where it can be - KV GiB from the KV token
        count times the bytes per token of O(plan) (C(kv_bytes_per_token)), blocks from the KV
        token count divided by the block size (O(block_size), else C(/metrics)). vLLM 0.8.5 to
        0.9.0 with the V1 engine (any Ampere or newer GPU) and the CPU engine log only tokens.
      - A floor that still cannot be checked is never a violation - it is reported under
        RV(budget.unchecked) with the reason, and O(unverifiable_floor) decides what follows.
    type: dict
    suboptions:
      min_kv_cache_gib:
        description: Smallest acceptable KV cache per GPU, GiB.
        type: float
      min_max_concurrency:
        description: Smallest acceptable number of max_model_len requests that fit at once.
        type: float
      max_weights_gib:
        description: Largest acceptable weight memory per GPU, GiB.
        type: float
      min_gpu_blocks:
        description: Smallest acceptable number of KV cache blocks.
        type: int
      min_kv_cache_tokens:
        description: Smallest acceptable KV cache size in tokens.
        type: int
  on_budget_violation:
    description:
      - V(fail) fails (and rolls back a changed configuration); V(warn) warns and succeeds.
    type: str
    choices: [fail, warn]
    default: fail
  unverifiable_floor:
    description:
      - What a floor of O(expect) that the log cannot prove does (see O(expect)).
      - V(warn) reports it (RV(budget.unchecked)) and warns; the start counts as verified.
      - V(fail) fails a container this run started (RV(kind=budget_unverifiable)), which rolls a
        changed configuration back like a failed start. A container that was already running is
        only reported, since its startup lines may have rotated out of its log.
    type: str
    choices: [warn, fail]
    default: warn
  rollback:
    description:
      - When a changed configuration fails readiness or verification, remove the new container and
        restore and start the previous one. With V(false) the failed container is stopped and
        kept for inspection, and the previous one is removed.
    type: bool
    default: true
  plan:
    description:
      - The result of the P(llmops.gpu_serving.vllm_memory_plan#filter) filter, reported side by
        side with the measured figures with the prediction error in percent.
    type: dict
  smoke_test:
    description:
      - After the server is ready and its budget verified, send one short chat completion
        (C(POST /v1/chat/completions), 8 tokens at temperature 0) to the first
        O(served_model_name). A failed request counts as a failed start
        (RV(kind=smoke_test_failed)), so a changed configuration is rolled back before the
        previous container is removed.
      - An answer with HTTP 200 fails too when its text is empty, blank or one character
        repeated (fp16 overflow answers C(!!!!!!)).
    type: bool
    default: false
  smoke_test_timeout:
    description:
      - Seconds the smoke request may take (the first request after a start can be slow).
    type: int
    default: 120
  network_mode:
    description:
      - Docker network of the container (C(--network)) - V(host), V(bridge), V(none) or the
        name of a Docker network. Empty uses the daemon's default.
      - With V(host) nothing is published - the server listens on O(container_port) of the host
        itself (on every address, vLLM's default C(--host)), and the module probes it there.
        vLLM's multi-node engines want host networking between real hosts (the ranks connect
        to each other on ports they pick at start).
    type: str
  recreate:
    description:
      - Recreate the container even when it matches the options (a cluster member whose peer
        changed - the members of one engine start together).
    type: bool
    default: false
  previous:
    description:
      - V(remove) - the default - removes the previous container once the new one is verified,
        and restores it at once when the new one fails (O(rollback)).
      - V(keep) leaves the previous container parked (stopped, named C(<name>-llmops-previous))
        in both cases, for a later V(committed) or V(rolled_back) - a cluster's members are
        committed or rolled back together, since a restored member alone cannot serve.
    type: str
    choices: [remove, keep]
    default: remove
  cluster:
    description:
      - Run this container as one member of an engine spread over several hosts (vLLM's own
        multi-node engine - the collection schedules nothing itself). Every member gets the
        same model, image and engine options; O(tensor_parallel_size) is the engine's whole
        tensor parallel size.
      - The engine follows the image's vLLM version - from 0.12 vLLM's native multi-node
        (C(--nnodes), C(--node-rank), C(--master-addr), C(--master-port),
        C(--distributed-executor-backend mp), C(--headless) on followers); before 0.12 the Ray
        pattern of vLLM's C(examples/online_serving/run_cluster.sh) (a Ray head with the server
        on the head, Ray workers on the followers, C(--distributed-executor-backend ray)).
      - A head is ready when the API serves and its log shows the world size of the layout
        (C(rank N in world size W is assigned as)); a follower serves no API and is ready when
        its log proves that it joined that world and it is still running
        O(cluster.join_settle) seconds later (a Ray worker - when C(ray start) reported
        C(Ray runtime started.)).
    type: dict
    suboptions:
      role:
        description: V(head) (node 0, serves the API) or V(follower).
        type: str
        choices: [head, follower]
        required: true
      nnodes:
        description: Number of hosts of the engine, 2 or more.
        type: int
        required: true
      node_rank:
        description: This host's rank, 0 for the head, 1 to O(cluster.nnodes) - 1 for followers.
        type: int
      master_addr:
        description: The head's address, reachable from every member.
        type: str
        required: true
      master_port:
        description: The head's torch.distributed port (C(--master-port)).
        type: int
        default: 29500
      pipeline_parallel_size:
        description:
          - C(--pipeline-parallel-size). The layout has O(tensor_parallel_size) x this many ranks,
            split evenly over the nodes - such as TP 4 within each of two 4-GPU hosts and PP 2
            across them, or TP 8 across both.
        type: int
        default: 1
      backend:
        description:
          - V(auto) chooses by the image's vLLM version (V(mp) from 0.12, V(ray) before).
          - V(ray) on images from 0.18 warns - the vllm/vllm-openai images no longer carry Ray.
        type: str
        choices: [auto, mp, ray]
        default: auto
      socket_ifname:
        description:
          - Network interface of the ranks' traffic - sets C(GLOO_SOCKET_IFNAME) and
            C(NCCL_SOCKET_IFNAME), as vLLM's multi-node documentation advises (a wrong guess
            hangs the join). Variables in O(env) win.
        type: str
      host_ip:
        description:
          - This host's address for the other members - sets C(VLLM_HOST_IP) (required for
            V(ray), as run_cluster.sh requires a VLLM_HOST_IP per node; and
            C(RAY_NODE_IP_ADDRESS)), and the Ray node's C(--node-ip-address).
        type: str
      ray_port:
        description: The Ray head's port (C(ray start --head --port)).
        type: int
        default: 6379
      join_settle:
        description:
          - Seconds a follower must keep running after its log proved the join before it counts
            as ready.
        type: int
        default: 5
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Pulls nothing, creates, stops and removes nothing; reports what would change. An image
        that is not on the host yet counts as a change. (An image that names its vLLM version
        nowhere is asked in a throwaway container, which is removed at once.)
      - A running container that matches the options is still verified (log, C(/health),
        C(/v1/models), memory report, O(expect)), since reading them changes nothing; a server
        that no longer serves fails the check.
  diff_mode:
    support: full
    details:
      - Before and after of every field that differs; secrets are masked.
  platform:
    platforms: posix
notes:
  - The module talks to the server at O(probe_host) and O(port) from the target host itself.
  - Docker errors at start (for example C(nvidia-container-cli requirement error)) are classified
    like log lines; other Docker errors have RV(kind=docker_error).
seealso:
  - name: vLLM OpenAI-compatible server
    description: The server's command line flags.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
"""

EXAMPLES = r"""
- name: Run the seed deployment (Qwen3-30B-A3B, TP 4, 32K context) and verify it
  llmops.gpu_serving.vllm_container:
    name: coder
    image: vllm/vllm-openai:v0.8.5
    runtime: nvidia
    gpus: all
    model_host_path: /home/llm/model/qwen/qwen3-30b-a3b
    model_container_path: /qwen/qwen3-30b-a3b
    port: 8000
    bind_address: 127.0.0.1
    cpuset_cpus: "0-55"
    ulimits:
      memlock: -1
      stack: 67108864
    ipc_mode: host
    restart_policy: always
    served_model_name: [coder]
    tensor_parallel_size: 4
    dtype: half
    max_model_len: 32768
    max_num_batched_tokens: 4096
    gpu_memory_utilization: 0.93
    block_size: 32
    enable_chunked_prefill: true
    swap_space: 16
    tokenizer_pool_size: 56
    disable_custom_all_reduce: true
    expect:
      min_kv_cache_gib: 4.0
      min_max_concurrency: 5.0
  register: vllm

- name: Show the KV cache vLLM reported
  ansible.builtin.debug:
    msg: >-
      {{ vllm.memory.kv_cache_gib }} GiB KV cache,
      {{ vllm.memory.max_concurrency }}x at {{ vllm.memory.max_model_len }} tokens

- name: Extend the context with YaRN (becomes --hf-overrides on vLLM 0.11.1 and later)
  llmops.gpu_serving.vllm_container:
    name: coder
    image: vllm/vllm-openai:v0.8.5
    model_container_path: /qwen/qwen3-30b-a3b
    model_host_path: /home/llm/model/qwen/qwen3-30b-a3b
    served_model_name: [coder]
    max_model_len: 131072
    rope_scaling:
      rope_type: yarn
      factor: 4.0
      original_max_position_embeddings: 32768

- name: Stop the server
  llmops.gpu_serving.vllm_container:
    name: coder
    image: vllm/vllm-openai:v0.8.5
    model_container_path: /qwen/qwen3-30b-a3b
    state: stopped

- name: Remove the server
  llmops.gpu_serving.vllm_container:
    name: coder
    state: absent
"""

RETURN = r"""
container:
  description: The container after the run (null after O(state=absent)).
  returned: always
  type: dict
  contains:
    id:
      description: Container id.
      type: str
    name:
      description: Container name.
      type: str
    status:
      description: Docker's status, such as C(running) or C(exited).
      type: str
  sample: {"id": "3f2a...", "name": "coder", "status": "running"}
image:
  description: The image and what the module read from it.
  returned: when O(state) is not V(absent)
  type: dict
  contains:
    ref:
      description: The image reference given.
      type: str
    id:
      description: Image id (null in check mode when the image is not pulled yet).
      type: str
    digest:
      description: Repository digest (C(repo@sha256:...)); null for a locally built image.
      type: str
    vllm_version:
      description: vLLM version the arguments were built for.
      type: str
      sample: "0.8.5"
    vllm_version_source:
      description: Where the version was read (C(option), C(image tag), a label...).
      type: str
    entrypoint_style:
      description: C(api_server) (C(--model) flag) or C(serve) (positional model).
      type: str
args:
  description: The vLLM arguments of the container, the API key masked.
  returned: when O(state) is not V(absent)
  type: list
  elements: str
  sample: ["--model", "/qwen/qwen3-30b-a3b", "--served-model-name", "coder"]
dropped_flags:
  description: Flags left out because the image's vLLM version does not have them, and why.
  returned: when O(state) is not V(absent)
  type: list
  elements: dict
cuda:
  description: The CUDA floor check (requirement, floor, host_cuda_version, satisfied, reason).
  returned: when O(state) is not V(absent)
  type: dict
endpoint:
  description: Base URL the server answers on.
  returned: when O(state=started)
  type: str
  sample: http://127.0.0.1:8000
ready_seconds:
  description: Seconds from the start of the wait until the server listed its models.
  returned: when O(state=started)
  type: float
timings:
  description:
    - Seconds since the wait began - C(health_ok_seconds) (first C(/health) 200),
      C(fatal_seconds) (first fatal log line), C(seconds) (end of the wait).
  returned: when the module waited for readiness
  type: dict
memory:
  description:
    - The memory report vLLM logged (vllm_logs.parse_memory_report) - engine, vllm_version,
      kv_cache_gib (minimum over ranks), weights_gib, gpu_blocks, cpu_blocks, kv_cache_tokens,
      max_model_len, max_concurrency, total_gpu_memory_gib, gpu_memory_utilization, budget_gib,
      timings, and ranks (one dict per rank). A figure the log does not give is null unless it
      could be derived; C(derived) says which figures were derived and how.
  returned: when O(state=started)
  type: dict
  sample:
    engine: v0
    kv_cache_gib: 4.3
    weights_gib: 14.25
    gpu_blocks: 5867
    cpu_blocks: 21845
    kv_cache_tokens: 187744
    max_model_len: 32768
    max_concurrency: 5.73
metrics:
  description: Labels of C(vllm:cache_config_info) on C(/metrics); null when absent.
  returned: when O(state=started)
  type: dict
live:
  description:
    - The server's load when it was verified, from the same C(/metrics) page (the
      P(llmops.gpu_serving.vllm_live_load#filter) filter's figures), null when the page did not
      answer. A figure the page lacks is null and named in C(missing).
  returned: when O(state=started)
  type: dict
  contains:
    requests_running:
      description: Requests in the model's batches.
      type: int
    requests_waiting:
      description: Requests queued.
      type: int
    kv_cache_usage_pct:
      description: KV-cache usage of the fullest engine, percent.
      type: float
    kv_cache_usage_metric:
      description: The metric the usage came from.
      type: str
    engines:
      description: Engines that reported.
      type: int
    summary:
      description: The three figures in one line, C(?) for a missing one.
      type: str
    missing:
      description: The figures the page lacked.
      type: list
      elements: str
metrics_mismatches:
  description: Disagreements between the log, C(/metrics) and the requested flags.
  returned: when O(state=started)
  type: list
  elements: str
budget:
  description:
    - The O(expect) check - C(expect), C(violations) (expect, limit, value, msg), C(unchecked)
      (expect, limit, field, reason, msg - floors the log cannot prove) and C(policy)
      (O(on_budget_violation), O(unverifiable_floor)).
  returned: when O(state=started)
  type: dict
smoke_test:
  description:
    - The smoke request (O(smoke_test)) - passed, status (HTTP status, null without an
      answer), seconds, reply (the start of the answer's content), error (why it failed - the
      error message of the answer, such as vLLM's C(EngineCore encountered an issue), or
      C(HTTP 200 with degenerate text)).
  returned: when O(smoke_test) is true and the server was ready
  type: dict
  sample: {"passed": true, "status": 200, "seconds": 0.41, "reply": "OK", "error": null}
plan_comparison:
  description: Per figure, the planned value (O(plan)), the measured one and error_pct.
  returned: when O(plan) is given and O(state=started)
  type: dict
  sample: {"kv_cache_gib": {"planned": 4.3, "measured": 4.3, "error_pct": 0.0}}
changes:
  description: Names of the fields that differ from the existing container (command, env, ...).
  returned: when an existing container differs
  type: list
  elements: str
  sample: ["command"]
image_pull:
  description: C(pulled), or C(would pull) in check mode.
  returned: when the image was (or would be) pulled
  type: str
reason:
  description:
    - How the wait ended - C(exited), C(fatal_log), C(unhealthy) (C(/health) answered what a dead
      engine answers) or C(timeout).
  returned: failure during the wait
  type: str
cluster:
  description:
    - The cluster member (O(cluster)) - role, backend (C(mp) or C(ray)), layout (nnodes,
      node_rank, tensor_parallel_size, pipeline_parallel_size, world_size, gpus_per_node,
      ranks held here), join (whether this member's log proved the join, and the lines), and
      memory (this member's report, labelled with its ranks - each rank holds its share of the
      KV heads, so the head's KV tokens are the engine's).
  returned: when O(cluster) is set and O(state=started)
  type: dict
previous_kept:
  description: The parked previous container O(previous=keep) left (its id), or null.
  returned: when O(previous=keep)
  type: str
rolled_back:
  description: Whether the previous container was restored after the new one failed.
  returned: always
  type: bool
rollback:
  description: What the rollback did (restored container id, whether it became ready again).
  returned: when a rollback ran
  type: dict
kind:
  description:
    - Why the server did not become ready - kv_cache_too_small, no_cache_memory,
      gpu_memory_busy, cuda_oom, nccl, cuda_driver, model_not_found, max_model_len_too_large
      (max_model_len above the model's limit), bad_argument, engine_failed (a wrapper, an exit
      without a recognised cause, or a dead engine behind C(/health)), budget_violation,
      budget_unverifiable (O(unverifiable_floor=fail)), smoke_test_failed, ready_timeout,
      docker_error (Docker refused to create or start the container).
    - For a cluster member also killed (exit 137 or 143 without an error line - docker kill,
      docker stop), host_oom (Docker reports OOMKilled), cluster_peer_lost (a rank's
      connection to a vanished member closed - Gloo's C(Connection closed by peer)),
      cluster_world_size (the log shows another world size than the layout's),
      cluster_join_timeout (a follower did not join, or the head's world never formed, within
      O(ready_timeout)).
  returned: failure
  type: str
  sample: kv_cache_too_small
proof:
  description: The log lines that prove RV(kind), root cause first.
  returned: failure
  type: list
  elements: str
log_tail:
  description: The last lines of the failed container's log.
  returned: failure
  type: list
  elements: str
exit_code:
  description: Exit code of the failed container, when it exited.
  returned: failure
  type: int
"""

import contextlib
import json
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.gpu_serving.plugins.module_utils.nvidia_smi import (
    NvidiaSmiError,
    gather_gpu_info,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_cluster import (
    ClusterError,
    check_node_gpus,
    head_join_timeout,
    head_world_check,
    layout,
    member_failure,
    member_from_container,
    member_plan,
    rank_memory,
    served_names_from_args,
    wait_until_joined,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container import (
    PREVIOUS_SUFFIX,
    actual_spec,
    check_chat_answer,
    check_tensor_parallel_size,
    compare_specs,
    compile_cache_mounts,
    desired_spec,
    display_spec,
    exposure_warning,
    image_env,
    memory_summary,
    parse_gpus,
    parse_ulimits,
    probe_address,
    smoke_proof,
    smoke_request,
    validate_options,
    verify_memory,
    visible_gpu_count,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_flags import (
    FlagError,
    build_vllm_args,
    check_block_size,
    detect_vllm_version,
    entrypoint_style,
    evaluate_cuda_requirement,
    mask_args,
    package_version_command,
    parse_package_version,
    parse_version,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    classify_message,
    parse_memory_report,
    startup_section,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_options import (
    ENGINE_OPTIONS,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_options import (
    argument_spec as engine_argument_spec,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_readiness import (
    LogFollower,
    failure_from_log,
    health_semantics,
    wait_until_ready,
)

try:
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from docker.types import DeviceRequest, Ulimit

    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError as import_error:  # pragma: no cover - exercised where the SDK is missing
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = import_error


class ModuleFailure(Exception):
    """Ends the run with fail_json(msg, **details) after the cleanup the caller does."""

    def __init__(self, msg: str, **details: Any):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def _find_container(client, name: str):
    found = client.containers.list(all=True, filters={"name": f"^/{name}$"})
    return found[0] if found else None


def _epoch_seconds(stamp: str | None) -> int | None:
    """Docker's ``2026-11-25T04:39:33.454261614Z`` as whole epoch seconds (None if unreadable).

    Rounded down: the log API's ``since`` keeps the lines of that second.
    """
    if not stamp or stamp.startswith("0001-"):
        return None
    try:
        # timezone.utc, not datetime.UTC: targets may run a Python older than 3.11.
        moment = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=timezone.utc  # noqa: UP017
        )
    except ValueError:
        return None
    return int(moment.timestamp())


def _container_info(container) -> dict[str, Any] | None:
    if container is None:
        return None
    container.reload()
    return {"id": container.id, "name": container.name, "status": container.status}


class VllmContainer:
    """One run of the module: the plan, the Docker calls, the wait and the verification."""

    def __init__(self, module: AnsibleModule):
        self.module = module
        self.p = module.params
        self.check_mode = module.check_mode
        self.warnings: list[str] = []
        self.result: dict[str, Any] = {"changed": False, "rolled_back": False, "container": None}
        try:
            if self.p["docker_host"]:
                self.client = docker.DockerClient(base_url=self.p["docker_host"])
            else:
                self.client = docker.from_env()
            self.client.ping()
        except DockerException as err:
            raise ModuleFailure(
                f"cannot reach the Docker engine: {err}", kind="docker_error"
            ) from err
        self.name = self.p["name"]
        self.previous_name = self.name + PREVIOUS_SUFFIX
        self.version: tuple[int, ...] | None = None
        # The cluster member this run plans (vllm_cluster.member_plan()), or None.
        self.cluster: dict[str, Any] | None = None
        self.served_override: list[str] | None = None

    # --- image and host facts ------------------------------------------------------------

    def _image(self):
        ref = self.p["image"]
        policy = self.p["pull"]
        try:
            image = self.client.images.get(ref)
        except ImageNotFound:
            image = None
        if policy == "never" and image is None:
            raise ModuleFailure(
                f"image {ref} is not on the host and pull is never", kind="docker_error"
            )
        if policy == "always" or image is None:
            if self.check_mode:
                self.result["image_pull"] = "would pull"
                if image is None:
                    self.result["changed"] = True
                return image
            try:
                repository, tag = docker.utils.parse_repository_tag(ref)
                image = self.client.images.pull(repository, tag=tag or "latest")
            except DockerException as err:
                raise ModuleFailure(f"cannot pull {ref}: {err}", kind="docker_error") from err
            self.result["image_pull"] = "pulled"
        return image

    def _host_facts(self) -> dict[str, Any]:
        facts = {
            "cuda_version": self.p["host_cuda_version"],
            "driver_version": self.p["host_driver_version"],
            "gpu_count": self.p["host_gpu_count"],
            "source": "options",
        }
        if facts["cuda_version"] and facts["driver_version"] and facts["gpu_count"] is not None:
            return facts
        smi = self.p["nvidia_smi_path"] or self.module.get_bin_path("nvidia-smi")
        if not smi:
            return facts

        def run(argv: list[str]) -> tuple[int, str, str]:
            return self.module.run_command(argv, environ_update={"LC_ALL": "C"})

        try:
            info = gather_gpu_info(run, smi)
        except (NvidiaSmiError, ValueError) as err:
            self.warnings.append(f"nvidia-smi could not report the host's GPUs: {err}")
            return facts
        facts["cuda_version"] = facts["cuda_version"] or info["cuda_version"]
        facts["driver_version"] = facts["driver_version"] or info["driver_version"]
        if facts["gpu_count"] is None:
            facts["gpu_count"] = info["gpu_count"]
        facts["source"] = "nvidia-smi"
        return facts

    def _package_version(self, image) -> str | None:
        """The vLLM package version inside ``image`` (a throwaway container, no network)."""
        try:
            output = self.client.containers.run(
                image.id,
                entrypoint=package_version_command(),
                command=[],
                remove=True,
                network_disabled=True,
                # No GPU: the NVIDIA runtime (a default runtime) then checks no CUDA floor.
                environment={"NVIDIA_VISIBLE_DEVICES": "void"},
                stdout=True,
                stderr=False,
            )
        except DockerException as err:
            self.warnings.append(f"could not read the vLLM package version of the image: {err}")
            return None
        return parse_package_version(output)

    # --- desired container ---------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        p = self.p
        image = self._image()
        attrs = image.attrs if image is not None else {}
        config = attrs.get("Config") or {}
        labels = config.get("Labels") or {}
        env_of_image = image_env(attrs)
        if p["vllm_version"]:
            version_text, version_source = p["vllm_version"], "option"
        else:
            version_text, version_source = detect_vllm_version(p["image"], labels, env_of_image)
            if version_text is None and image is not None:
                # A digest-only, :latest or private tag: ask the vLLM package inside the image.
                version_text = self._package_version(image)
                version_source = "vLLM package in the image" if version_text else None
        version = parse_version(version_text)
        self.version = version
        style = entrypoint_style(config.get("Entrypoint"), config.get("Cmd"))

        effective_env = dict(env_of_image)
        effective_env.update({str(k): str(v) for k, v in (p["env"] or {}).items()})
        host = self._host_facts()
        cuda = evaluate_cuda_requirement(
            effective_env, host["cuda_version"], host["driver_version"], p["host_gpu_brand"]
        )
        self.result["cuda"] = cuda
        if p["cuda_check"] and cuda["satisfied"] is False:
            raise ModuleFailure(
                f"image {p['image']} cannot run on this host: {cuda['reason']}",
                kind="cuda_driver",
                cuda=cuda,
            )
        if p["cuda_check"] and cuda["satisfied"] is None and cuda["requirement"]:
            self.warnings.append(f"CUDA floor not checked: {cuda['reason']}")

        errors = []
        if p["block_size"] is not None:
            errors.append(check_block_size(p["block_size"], version))
        visible = visible_gpu_count(parse_gpus(p["gpus"]), host["gpu_count"])
        if not p["gpus"] and visible == 0:
            visible = None  # no GPU requested: a CPU build or a test image; nothing to check
        if p["cluster"]:
            try:
                errors.append(
                    check_node_gpus(layout(p["cluster"], p["tensor_parallel_size"]), visible)
                )
            except ClusterError as err:
                errors.append(str(err))
        else:
            errors.append(check_tensor_parallel_size(p["tensor_parallel_size"], visible))
        errors = [error for error in errors if error]
        if errors:
            raise ModuleFailure("; ".join(errors), kind="bad_argument", errors=errors)

        options = dict(p)
        options["model"] = p["model"] or p["model_container_path"]
        try:
            built = build_vllm_args(options, version, style, p["on_unsupported_flag"])
        except FlagError as err:
            raise ModuleFailure(str(err), kind="bad_argument") from err
        self.warnings.extend(built["warnings"])
        exposed = exposure_warning(p["bind_address"], p["port"], p["api_key"], p["env"])
        if exposed:
            self.warnings.append(exposed)
        digests = attrs.get("RepoDigests") or []
        self.result["image"] = {
            "ref": p["image"],
            "id": image.id if image is not None else None,
            "digest": digests[0] if digests else None,
            "vllm_version": version_text,
            "vllm_version_source": version_source,
            "entrypoint_style": style,
        }
        args, entrypoint, env = built["args"], None, p["env"]
        if p["cluster"]:
            try:
                self.cluster = member_plan(
                    p["cluster"],
                    version,
                    p["tensor_parallel_size"],
                    built["args"],
                    image_entrypoint=config.get("Entrypoint"),
                    extra_args=p["extra_args"],
                    env=p["env"],
                )
            except ClusterError as err:
                raise ModuleFailure(str(err), kind="bad_argument") from err
            self.warnings.extend(self.cluster["warnings"])
            args, entrypoint, env = (self.cluster[key] for key in ("command", "entrypoint", "env"))
            self.result["cluster"] = {
                key: self.cluster[key] for key in ("layout", "backend", "entrypoint")
            }
        self.result["args"] = mask_args(args)
        self.result["dropped_flags"] = built["dropped"]
        image_id = image.id if image is not None else None
        desired = desired_spec(p, args, image_id, entrypoint=entrypoint, env=env)
        return {"desired": desired, "image": image, "image_env": env_of_image}

    def compare(self, container, plan: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        image_attrs: dict[str, Any] = {}
        image = plan["image"]
        if image is not None and container.attrs.get("Image") == image.id:
            image_attrs = image.attrs
        else:
            try:
                image_attrs = self.client.images.get(container.attrs.get("Image")).attrs
            except DockerException:
                image_attrs = {}
        actual = actual_spec(container.attrs, image_attrs)
        return compare_specs(plan["desired"], actual, plan["image_env"])

    def _create(self, desired: dict[str, Any], *, restart_policy: str | None = None):
        """Create the container; ``restart_policy`` overrides the desired one for now."""
        p = self.p
        kwargs: dict[str, Any] = {
            "image": p["image"],
            "command": desired["command"],
            "name": self.name,
            "detach": True,
            "environment": desired["env"],
            "labels": desired["labels"],
        }
        volumes: dict[str, dict[str, str]] = {}
        if p["model_host_path"]:
            volumes[p["model_host_path"]] = {
                "bind": p["model_container_path"],
                "mode": "ro" if p["model_read_only"] else "rw",
            }
        for host, container in compile_cache_mounts(p).items():
            volumes[host] = {"bind": container, "mode": "rw"}
        if volumes:
            kwargs["volumes"] = volumes
        if desired["ports"]:
            kwargs["ports"] = {f"{p['container_port']}/tcp": (p["bind_address"], p["port"])}
        if desired["entrypoint"] is not None:
            kwargs["entrypoint"] = desired["entrypoint"]
        network = desired["network_mode"]
        if network in ("host", "bridge", "none") or str(network).startswith("container:"):
            kwargs["network_mode"] = network
        elif network:
            # A user-defined network: its DNS resolves the members by container name.
            kwargs["network"] = network
        if desired["runtime"]:
            kwargs["runtime"] = desired["runtime"]
        gpus = desired["gpus"]
        if gpus is not None:
            if "device_ids" in gpus:
                request = DeviceRequest(device_ids=gpus["device_ids"], capabilities=[["gpu"]])
            else:
                request = DeviceRequest(count=gpus["count"], capabilities=[["gpu"]])
            kwargs["device_requests"] = [request]
        if desired["cpuset_cpus"]:
            kwargs["cpuset_cpus"] = desired["cpuset_cpus"]
        ulimits = parse_ulimits(p["ulimits"])
        if ulimits:
            kwargs["ulimits"] = [
                Ulimit(name=name, soft=soft, hard=hard) for name, (soft, hard) in ulimits.items()
            ]
        if desired["ipc_mode"]:
            kwargs["ipc_mode"] = desired["ipc_mode"]
        if desired["shm_size"]:
            kwargs["shm_size"] = desired["shm_size"]
        policy = restart_policy or desired["restart_policy"]
        if policy != "no":
            kwargs["restart_policy"] = {"Name": policy, "MaximumRetryCount": 0}
        try:
            return self.client.containers.create(**kwargs)
        except DockerException as err:
            raise ModuleFailure(
                f"Docker refused to create {self.name}: {err}",
                kind=classify_message(str(err)) or "docker_error",
                proof=[str(err)],
            ) from err

    # --- readiness -----------------------------------------------------------------------

    def _probe(
        self, path: str, body: dict[str, Any] | None = None, timeout: float = 3
    ) -> tuple[int | None, str]:
        """GET ``path`` (POST ``body`` as JSON when given); (status or None, text)."""
        host = self.p["probe_host"] or probe_address(self.p["bind_address"])
        request = urllib.request.Request(
            f"http://{host}:{self._api_port()}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        if self.p["api_key"]:
            request.add_header("Authorization", f"Bearer {self.p['api_key']}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return None, ""

    def _served_names(self) -> list[str]:
        """What /v1/models must list: the served names, else the model path as vLLM does."""
        if self.served_override:
            return self.served_override
        return self.p["served_model_name"] or [self.p["model"] or self.p["model_container_path"]]

    def _api_port(self) -> int:
        """Host networking publishes nothing: the server answers on its own port."""
        return self.p["container_port"] if self.p["network_mode"] == "host" else self.p["port"]

    def wait_ready(self, container, *, started_now: bool, own_image: bool = True) -> dict[str, Any]:
        """Wait for readiness, then read and verify the memory report.

        ``started_now``: this run started the container (its whole startup is to be judged);
        otherwise only the startup section of its log counts, and its probes. ``own_image``:
        the container runs the planned image, so its vLLM version's /health semantics apply.
        """
        container.reload()
        initial = container.attrs.get("State") or {}
        restarts = container.attrs.get("RestartCount", 0)
        started_at = initial.get("StartedAt")
        # Only this run's lines: an earlier run's failure (before a restart) is not this one's.
        since = _epoch_seconds(started_at)
        follower = LogFollower(
            container.logs(stream=True, follow=True, stdout=True, stderr=True, since=since)
        )
        follower.start()
        lines: list[str] = []

        def state() -> dict[str, Any]:
            try:
                container.reload()
            except NotFound:
                return {"running": False, "exit_code": None, "restarted": False}
            current = container.attrs.get("State") or {}
            restarted = bool(
                current.get("Restarting")
                or container.attrs.get("RestartCount", 0) != restarts
                or current.get("StartedAt") != started_at
            )
            return {
                "running": bool(current.get("Running")),
                "exit_code": current.get("ExitCode"),
                "oom_killed": current.get("OOMKilled"),
                "restarted": restarted,
            }

        member = self.cluster
        if member is not None and member["layout"]["role"] == "follower":
            joined = wait_until_joined(
                read_logs=follower.drain,
                container_state=state,
                lay=member["layout"],
                backend=member["backend"],
                timeout=self.p["ready_timeout"],
                log_lines=lines,
                full_log=lambda: self._full_log(container, since),
                settle=member["settle"],
            )
            follower.close()
            return self._joined_outcome(joined, lines)
        served = self._served_names()
        health = health_semantics(self.version if own_image else None)
        wait = wait_until_ready(
            read_logs=follower.drain,
            container_state=state,
            probe=self._probe,
            served_names=served,
            timeout=self.p["ready_timeout"],
            log_lines=lines,
            full_log=lambda: self._full_log(container, since),
            startup_only=not started_now,
            dead_health_statuses=health["dead_statuses"],
        )
        follower.close()
        self.result["timings"] = {
            "seconds": wait["seconds"],
            "health_ok_seconds": wait["health_ok_seconds"],
            "fatal_seconds": wait["fatal_seconds"],
        }
        if not wait["ready"] and member is not None and wait["reason"] == "timeout":
            stalled = head_join_timeout(lines, member["layout"])
            if stalled is not None:
                wait["kind"], wait["proof"] = "cluster_join_timeout", stalled
        if not wait["ready"] and member is not None and wait["kind"] in (None, "engine_failed"):
            # A member's engine that failed without its own cause: a vanished peer, a kill.
            wait["kind"], wait["proof"] = member_failure(
                lines, {"running": wait["reason"] != "exited", "exit_code": wait["exit_code"]}
            )
        if not wait["ready"]:
            kind = wait["kind"]
            if wait["reason"] == "timeout":
                message = f"{self.name} was not ready within {self.p['ready_timeout']} s"
                kind = kind or "ready_timeout"
            elif wait["reason"] == "exited":
                message = (
                    f"{self.name} exited (code {wait['exit_code']}) before it was ready: {kind}"
                )
            elif wait["reason"] == "unhealthy":
                message = (
                    f"{self.name} answers /health with HTTP {wait['health_status']}, "
                    f"its engine is dead: {kind}"
                )
            else:
                message = f"{self.name} failed to start: {kind}"
            if wait["proof"]:
                message += f": {wait['proof'][0]}"
            if kind == "engine_failed" and not wait["proof"]:
                message += " (no recognised error line; see log_tail)"
            return {
                "ok": False,
                "msg": message,
                "details": {
                    "kind": kind,
                    "reason": wait["reason"],
                    "proof": wait["proof"],
                    "log_tail": wait["log_tail"],
                    "exit_code": wait["exit_code"],
                },
            }
        self.result["ready_seconds"] = wait["seconds"]
        # The whole log: the wait may have started after the first lines (an unchanged container).
        text = container.logs(stdout=True, stderr=True, since=since).decode(
            "utf-8", errors="replace"
        )
        # Only the startup: what follows the ready line is serving (request logs, prompts).
        startup = "\n".join(startup_section(text.splitlines()))
        if health["proves_engine"] is False and not self.p["smoke_test"] and own_image:
            self.warnings.append(f"{health['note']}; without it the check is /health only")
        if member is not None:
            wrong = head_world_check(startup.splitlines(), member["layout"])
            if wrong is not None:
                return {
                    "ok": False,
                    "msg": f"{self.name} {wrong['msg']}",
                    "details": {"kind": wrong["kind"], "proof": wrong["proof"]},
                }
        outcome = self.verify(startup, started_now=started_now)
        if member is not None and "cluster" in self.result:
            self.result["cluster"]["memory"] = rank_memory(
                self.result.get("memory") or {}, member["layout"], None
            )
        return outcome

    def _joined_outcome(self, joined: dict[str, Any], lines: list[str]) -> dict[str, Any]:
        """A follower's wait as the outcome wait_ready() returns; its memory report per rank."""
        self.result["timings"] = {
            "seconds": joined["seconds"],
            "joined_seconds": joined["joined_seconds"],
        }
        if "cluster" in self.result:
            self.result["cluster"]["join"] = {"joined": joined["ready"], "proof": joined["proof"]}
        if not joined["ready"]:
            message = f"{self.name} (cluster follower) did not join: {joined['kind']}"
            if joined["proof"]:
                message += f": {joined['proof'][0]}"
            return {
                "ok": False,
                "msg": message,
                "details": {
                    "kind": joined["kind"],
                    "reason": joined["reason"],
                    "proof": joined["proof"],
                    "log_tail": joined["log_tail"],
                    "exit_code": joined["exit_code"],
                },
            }
        self.result["ready_seconds"] = joined["seconds"]
        report = parse_memory_report("\n".join(lines))
        self.result["memory"] = memory_summary(report)
        if "cluster" in self.result:
            self.result["cluster"]["memory"] = rank_memory(report, self.cluster["layout"], None)
        return {"ok": True}

    @staticmethod
    def _full_log(container, since: int | None) -> list[str]:
        try:
            return (
                container.logs(stdout=True, stderr=True, since=since)
                .decode("utf-8", errors="replace")
                .splitlines()
            )
        except DockerException:
            return []

    def verify(self, log_text: str, *, started_now: bool) -> dict[str, Any]:
        p = self.p
        status, metrics_text = self._probe("/metrics")
        checked = verify_memory(
            log_text,
            metrics_text=metrics_text if status == 200 else None,
            expect=p["expect"],
            plan=p["plan"],
            block_size=p["block_size"],
            gpu_memory_utilization=p["gpu_memory_utilization"],
            max_model_len=p["max_model_len"],
            startup_in_log=started_now,
            on_budget_violation=p["on_budget_violation"],
            unverifiable_floor=p["unverifiable_floor"],
        )
        self.warnings.extend(checked["warnings"])
        self.result["memory"] = checked["memory"]
        self.result["metrics"] = checked["metrics"]
        self.result["live"] = checked["live"]
        self.result["metrics_mismatches"] = checked["mismatches"]
        self.result["budget"] = checked["budget"]
        if checked["plan_comparison"] is not None:
            self.result["plan_comparison"] = checked["plan_comparison"]
        failure = checked["failure"]
        if failure:
            return {
                "ok": False,
                "msg": f"{self.name} {failure['msg']}",
                "details": {"kind": failure["kind"], "proof": failure["proof"]},
            }
        if p["smoke_test"]:
            return self.smoke_test()
        return {"ok": True}

    def smoke_test(self) -> dict[str, Any]:
        """One real chat completion: the server answers requests, not only its probes."""
        served = self._served_names()[0]
        started = time.monotonic()
        status, text = self._probe(
            "/v1/chat/completions", smoke_request(served), timeout=self.p["smoke_test_timeout"]
        )
        ok, said = check_chat_answer(status, text)
        self.result["smoke_test"] = {
            "passed": ok,
            "status": status,
            "seconds": round(time.monotonic() - started, 2),
            "reply": said if ok else None,
            "error": None if ok else said,
        }
        if ok:
            return {"ok": True}
        return {
            "ok": False,
            "msg": f"{self.name} is ready, but the smoke request failed: {said}",
            "details": {"kind": "smoke_test_failed", "proof": smoke_proof(served, said, text)},
        }

    # --- states --------------------------------------------------------------------------

    def _set_diff(self, diff: dict[str, Any]) -> None:
        self.result["diff"] = {"before": diff["before"], "after": diff["after"]}
        self.result["changes"] = diff["changed"]

    def _remove(self, container) -> None:
        with contextlib.suppress(NotFound):
            container.remove(force=True)

    def absent(self) -> None:
        found = [
            c
            for c in (_find_container(self.client, n) for n in (self.name, self.previous_name))
            if c
        ]
        if found:
            self.result["changed"] = True
            self.result["diff"] = {"before": {"containers": [c.name for c in found]}, "after": {}}
            if not self.check_mode:
                for container in found:
                    self._remove(container)

    def present(self, *, stop: bool) -> None:
        plan = self.plan()
        existing = _find_container(self.client, self.name)
        match = False
        if existing is not None:
            match, diff = self.compare(existing, plan)
            if not match:
                self._set_diff(diff)
        else:
            self.result["diff"] = {"before": {}, "after": display_spec(plan["desired"])}
        container = existing
        if not match:
            self.result["changed"] = True
            if self.check_mode:
                return
            if existing is not None:
                self._remove(existing)
            container = self._create(plan["desired"])
        if stop and container is not None:
            container.reload()
            if container.status in ("running", "restarting"):
                self.result["changed"] = True
                if not self.check_mode:
                    container.stop(timeout=self.p["stop_timeout"])
        self.result["container"] = _container_info(container) if not self.check_mode else None

    def started(self) -> None:
        p = self.p
        plan = self.plan()
        self.result["endpoint"] = (
            f"http://{p['probe_host'] or probe_address(p['bind_address'])}:{self._api_port()}"
        )
        existing = _find_container(self.client, self.name)
        leftover = _find_container(self.client, self.previous_name)
        match = False
        if existing is not None:
            match, diff = self.compare(existing, plan)
            if not match:
                self._set_diff(diff)
        else:
            self.result["diff"] = {"before": {}, "after": display_spec(plan["desired"])}
        if existing is not None and match and p["recreate"]:
            match = False
            self.result["changes"] = ["recreate"]
            self.result["diff"] = {
                "before": {"container": existing.id},
                "after": {"recreate": True},
            }

        if existing is not None and match:
            existing.reload()
            if leftover is not None and not self.check_mode:
                # A previous container left behind by an interrupted run; this one is current.
                self._remove(leftover)
                self.result["changed"] = True
            if existing.status == "running":
                self.result["container"] = _container_info(existing)
                # Check mode verifies too: reading the log and the API changes nothing, and an
                # audit (playbooks/verify.yml) needs to know that the server still serves.
                outcome = self.wait_ready(existing, started_now=False)
                if not outcome["ok"]:
                    raise ModuleFailure(outcome["msg"], **outcome["details"])
                return
            self.result["changed"] = True
            if self.check_mode:
                return
            self._start(existing)
            outcome = self.wait_ready(existing, started_now=True)
            self.result["container"] = _container_info(existing)
            if not outcome["ok"]:
                raise ModuleFailure(outcome["msg"], **outcome["details"])
            return

        self.result["changed"] = True
        if self.check_mode:
            return
        parked = self._park(existing, leftover)
        new = None
        try:
            # Without a restart policy until verified: a failing configuration must not be
            # restarted in a loop while the module reads why it failed.
            new = self._create(plan["desired"], restart_policy="no")
            self._start(new)
            outcome = self.wait_ready(new, started_now=True)
            if outcome["ok"] and plan["desired"]["restart_policy"] != "no":
                new.update(
                    restart_policy={
                        "Name": plan["desired"]["restart_policy"],
                        "MaximumRetryCount": 0,
                    }
                )
        except ModuleFailure as err:
            outcome = {"ok": False, "msg": err.msg, "details": err.details}
        if outcome["ok"]:
            if parked is not None and p["previous"] == "keep":
                self.result["previous_kept"] = parked["container"].id
            elif parked is not None:
                self._remove(parked["container"])
            self.result["container"] = _container_info(new)
            return
        self._fail_new(new, parked, outcome)

    def _start(self, container) -> None:
        try:
            container.start()
        except APIError as err:
            text = str(err.explanation or err)
            kind = classify_message(text) or "docker_error"
            raise ModuleFailure(
                f"Docker could not start {self.name}: {text}", kind=kind, proof=[text]
            ) from err

    def _park(self, existing, leftover) -> dict[str, Any] | None:
        """Stop the current container and rename it out of the way, kept for a rollback."""
        if existing is None:
            if leftover is None:
                return None
            leftover.reload()
            policy = (leftover.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
            return {"container": leftover, "was_running": True, "restart_policy": policy}
        existing.reload()
        policy = (existing.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
        was_running = existing.status in ("running", "restarting")
        if leftover is not None:
            self._remove(leftover)
        # "always" would bring a stopped container back when dockerd restarts during the wait.
        existing.update(restart_policy={"Name": "no", "MaximumRetryCount": 0})
        if was_running:
            existing.stop(timeout=self.p["stop_timeout"])
        existing.rename(self.previous_name)
        return {"container": existing, "was_running": was_running, "restart_policy": policy}

    def _fail_new(self, new, parked: dict[str, Any] | None, outcome: dict[str, Any]) -> None:
        details = dict(outcome["details"])
        if new is not None and not details.get("log_tail"):
            try:
                text = new.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
                lines = text.splitlines()
                details["log_tail"] = lines[-30:]
                if not details.get("proof"):
                    kind, proof = failure_from_log(lines)
                    details["proof"] = proof
                    if kind and details.get("kind") in (None, "docker_error"):
                        details["kind"] = kind
            except DockerException:
                pass
        if self.p["rollback"]:
            if new is not None:
                self._remove(new)
            if parked is not None and self.p["previous"] == "keep":
                # A cluster member: restored with the others (state rolled_back), not alone.
                self.result["previous_kept"] = parked["container"].id
                outcome["msg"] += (
                    f"; the new container was removed, the previous one stays parked as "
                    f"{self.previous_name} for state rolled_back"
                )
            elif parked is not None:
                details["rollback"] = self._restore(parked)
                details["rolled_back"] = True
                self.result["rolled_back"] = True
                self.result["container"] = _container_info(parked["container"])
                outcome["msg"] += f"; rolled back to the previous container {self.name}"
            else:
                outcome["msg"] += "; the new container was removed (no previous one to restore)"
        elif new is not None:
            with contextlib.suppress(DockerException):
                # Kept for inspection, without the restart policy it was created without.
                new.stop(timeout=self.p["stop_timeout"])
            self.result["container"] = _container_info(new)
            if parked is not None:
                self._remove(parked["container"])
            outcome["msg"] += "; rollback is off: the failed container is kept, stopped"
        if not self.p["rollback"] and parked is not None and new is None:
            # Nothing new was created: put the previous container back rather than lose it.
            details["rollback"] = self._restore(parked)
            details["rolled_back"] = True
            self.result["rolled_back"] = True
        raise ModuleFailure(outcome["msg"], **details)

    def _restore(self, parked: dict[str, Any]) -> dict[str, Any]:
        old = parked["container"]
        old.rename(self.name)
        policy = parked["restart_policy"] or {}
        if policy.get("Name"):
            old.update(
                restart_policy={
                    "Name": policy["Name"],
                    "MaximumRetryCount": policy.get("MaximumRetryCount", 0),
                }
            )
        info: dict[str, Any] = {"container_id": old.id, "started": False, "ready": None}
        if parked["was_running"]:
            old.start()
            info["started"] = True
            # The result describes the failed new container; the restored one's readiness and
            # memory report go under rollback.
            keys = ("memory", "budget", "metrics", "metrics_mismatches", "plan_comparison")
            keys += ("ready_seconds", "timings", "smoke_test")
            saved = {key: self.result[key] for key in keys if key in self.result}
            outcome = self.wait_ready(old, started_now=False, own_image=False)
            info["ready"] = outcome["ok"]
            info["memory"] = self.result.get("memory")
            info["timings"] = self.result.get("timings")
            if not outcome["ok"]:
                info["error"] = outcome["msg"]
            for key in keys:
                self.result.pop(key, None)
            self.result.update(saved)
        return info

    def committed(self) -> None:
        """Remove the parked previous container of a verified change (previous=keep)."""
        parked = _find_container(self.client, self.previous_name)
        if parked is None:
            return
        self.result["changed"] = True
        self.result["diff"] = {"before": {"containers": [parked.name]}, "after": {}}
        if not self.check_mode:
            self._remove(parked)

    def rolled_back(self) -> None:
        """Put the parked previous container back and wait until it serves (or joined)."""
        current = _find_container(self.client, self.name)
        parked = _find_container(self.client, self.previous_name)
        if current is None and parked is None:
            return
        self.result["changed"] = True
        before = [c.name for c in (current, parked) if c is not None]
        self.result["diff"] = {
            "before": {"containers": before},
            "after": {"containers": [self.name] if parked is not None else []},
        }
        if self.check_mode:
            return
        if current is not None:
            self._remove(current)
        if parked is None:
            return
        parked.rename(self.name)
        if self.p["restart_policy"] != "no":
            parked.update(restart_policy={"Name": self.p["restart_policy"], "MaximumRetryCount": 0})
        # The restored configuration's own layout and names: they may differ from the options.
        config = parked.attrs.get("Config") or {}
        self.cluster = member_from_container(config.get("Entrypoint"), config.get("Cmd"))
        self.served_override = served_names_from_args(config.get("Cmd") or []) or None
        # Probed where it publishes its server, which the options may no longer say.
        bindings = ((parked.attrs.get("HostConfig") or {}).get("PortBindings") or {}).values()
        published = [b for group in bindings for b in group or [] if b.get("HostPort")]
        if published:
            self.p["port"] = int(published[0]["HostPort"])
            if published[0].get("HostIp") and not self.p["probe_host"]:
                self.p["probe_host"] = probe_address(published[0]["HostIp"])
        self._start(parked)
        self.result["rolled_back"] = True
        outcome = self.wait_ready(parked, started_now=True, own_image=False)
        self.result["container"] = _container_info(parked)
        if not outcome["ok"]:
            raise ModuleFailure(
                f"restored {self.name}, but it did not come back: {outcome['msg']}",
                **outcome["details"],
            )

    def run(self) -> None:
        state = self.p["state"]
        if state == "committed":
            self.committed()
        elif state == "rolled_back":
            self.rolled_back()
        elif state == "absent":
            self.absent()
        elif state == "started":
            self.started()
        else:
            self.present(stop=state == "stopped")


def main() -> None:
    expect_options = {
        "min_kv_cache_gib": {"type": "float"},
        "min_max_concurrency": {"type": "float"},
        "max_weights_gib": {"type": "float"},
        "min_gpu_blocks": {"type": "int"},
        "min_kv_cache_tokens": {"type": "int"},
    }
    cluster_options = {
        "role": {"type": "str", "required": True, "choices": ["head", "follower"]},
        "nnodes": {"type": "int", "required": True},
        "node_rank": {"type": "int"},
        "master_addr": {"type": "str", "required": True},
        "master_port": {"type": "int", "default": 29500},
        "pipeline_parallel_size": {"type": "int", "default": 1},
        "backend": {"type": "str", "default": "auto", "choices": ["auto", "mp", "ray"]},
        "socket_ifname": {"type": "str"},
        "host_ip": {"type": "str"},
        "ray_port": {"type": "int", "default": 6379},
        "join_settle": {"type": "int", "default": 5},
    }
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {
                "type": "str",
                "default": "started",
                "choices": ["absent", "present", "stopped", "started", "committed", "rolled_back"],
            },
            "image": {"type": "str"},
            "pull": {
                "type": "str",
                "default": "missing",
                "choices": ["missing", "always", "never"],
            },
            "docker_host": {"type": "str"},
            "runtime": {"type": "str"},
            "gpus": {"type": "str", "default": "all"},
            "model_host_path": {"type": "path"},
            "model_container_path": {"type": "str"},
            "model_read_only": {"type": "bool", "default": False},
            "compile_cache_host_path": {"type": "path"},
            "compile_cache_container_path": {"type": "str", "default": "/root/.cache/vllm"},
            "port": {"type": "int", "default": 8000},
            "container_port": {"type": "int", "default": 8000},
            "bind_address": {"type": "str", "default": "127.0.0.1"},
            "probe_host": {"type": "str"},
            "cpuset_cpus": {"type": "str"},
            "ulimits": {"type": "dict"},
            "ipc_mode": {"type": "str"},
            "shm_size": {"type": "str"},
            "restart_policy": {
                "type": "str",
                "default": "always",
                "choices": ["no", "always", "unless-stopped", "on-failure"],
            },
            "stop_timeout": {"type": "int", "default": 30},
            "env": {"type": "dict"},
            "labels": {"type": "dict"},
            "model": {"type": "str"},
            "served_model_name": {"type": "list", "elements": "str"},
            # The engine options, typed once in module_utils/vllm_options.py.
            **engine_argument_spec(
                ENGINE_OPTIONS, enable_chunked_prefill=False, disable_custom_all_reduce=False
            ),
            "rope_scaling": {"type": "dict"},
            "api_key": {"type": "str", "no_log": True},
            "extra_args": {"type": "list", "elements": "str", "default": []},
            "vllm_version": {"type": "str"},
            "on_unsupported_flag": {"type": "str", "default": "warn", "choices": ["warn", "fail"]},
            "cuda_check": {"type": "bool", "default": True},
            "host_cuda_version": {"type": "str"},
            "host_driver_version": {"type": "str"},
            "host_gpu_brand": {"type": "str"},
            "host_gpu_count": {"type": "int"},
            "nvidia_smi_path": {"type": "path"},
            "ready_timeout": {"type": "int", "default": 900},
            "expect": {"type": "dict", "options": expect_options},
            "on_budget_violation": {"type": "str", "default": "fail", "choices": ["fail", "warn"]},
            "unverifiable_floor": {"type": "str", "default": "warn", "choices": ["warn", "fail"]},
            "rollback": {"type": "bool", "default": True},
            "plan": {"type": "dict"},
            "smoke_test": {"type": "bool", "default": False},
            "smoke_test_timeout": {"type": "int", "default": 120},
            "network_mode": {"type": "str"},
            "recreate": {"type": "bool", "default": False},
            "previous": {"type": "str", "default": "remove", "choices": ["remove", "keep"]},
            "cluster": {"type": "dict", "options": cluster_options},
        },
        required_if=[("state", "started", ["image"]), ("state", "present", ["image"])],
        supports_check_mode=True,
    )
    # An empty address (the role's "decide for me") publishes on loopback only, never on all.
    module.params["bind_address"] = module.params["bind_address"] or "127.0.0.1"
    errors = validate_options(module.params)
    if errors:
        module.fail_json(
            msg="; ".join(errors), errors=errors, kind="bad_argument", rolled_back=False
        )
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker>=5"), exception=str(DOCKER_IMPORT_ERROR))

    run = None
    try:
        run = VllmContainer(module)
        run.run()
    except ModuleFailure as err:
        result = dict(run.result) if run is not None else {"rolled_back": False}
        result.update(err.details)
        if run is not None and run.warnings:
            result["warnings"] = run.warnings
        module.fail_json(msg=err.msg, **result)
    except DockerException as err:
        result = dict(run.result) if run is not None else {}
        module.fail_json(msg=f"Docker error: {err}", kind="docker_error", **result)
    for warning in run.warnings:
        module.warn(warning)
    result = run.result
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**json.loads(json.dumps(result, default=str)))


if __name__ == "__main__":
    main()
