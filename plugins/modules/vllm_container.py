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
      - When the old container's command line sets C(--shutdown-timeout) (vLLM 0.18 and later -
        on SIGTERM the server refuses new requests and waits that long for the running ones),
        the old container is stopped with that value plus 15 s if it is larger, so that Docker
        does not kill the server in the middle of its own graceful wait.
    type: int
    default: 30
  drain_timeout:
    description:
      - Before the running container is stopped to be replaced (a changed configuration, an
        upgrade, O(recreate)), wait up to this many seconds until its C(/metrics) reports no
        running request (C(vllm:num_requests_running), summed over engines), reading it once a
        second on the port the old container publishes. A page that does not answer or lacks
        the figure does not end the wait early; the bound does. RV(drain) reports the wait.
      - The module cannot take the host out of a load balancer; stop routing to it first (for
        example with C(serial) and a pre-task of the play) so that the count can reach 0.
      - V(0) does not wait. A cluster follower, which serves no requests, is not drained.
    type: int
    default: 60
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
  gpu_release_timeout:
    description:
      - Before the previous container is started again after a failed start, the failed one is
        removed and the module waits up to this many seconds until none of its processes (their
        host PIDs, read with C(docker top) before it was removed) holds GPU memory, polling
        C(nvidia-smi --query-compute-apps=pid,used_memory) once a second. An engine started while
        the failed one's CUDA contexts still hold memory can fail for want of it.
      - The wait ends early when nothing is left to wait for (a container that had exited) or the
        host has no C(nvidia-smi) (O(nvidia_smi_path), else the PATH); RV(gpu_release) says what
        was waited for and why it ended. V(0) does not wait.
    type: int
    default: 60
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
drain:
  description:
    - The wait for the old container's running requests before it was stopped
      (O(drain_timeout)), and the stop timeout it was stopped with.
  returned: when a running container was stopped to be replaced
  type: dict
  contains:
    container:
      description: The old container's name.
      type: str
    drained:
      description:
        - True - it reported 0 running requests; false - the bound passed with
          RV(drain.requests_running) still running; null - not known (RV(drain.reason)).
      type: bool
    requests_running:
      description: C(vllm:num_requests_running) at the last read, null when it was not read.
      type: int
    polls:
      description: How many times C(/metrics) was read.
      type: int
    seconds:
      description: How long the drain took.
      type: float
    timeout:
      description: The bound, O(drain_timeout).
      type: int
    last_error:
      description: The last read of C(/metrics) that failed or lacked the figure, or null.
      type: str
    reason:
      description:
        - Why it was not drained or not waited for, such as C(the drain is off (drain_timeout
          0)), C(a cluster follower serves no requests of its own), C(the bound passed with
          requests still running).
      type: str
    shutdown_timeout:
      description: The C(--shutdown-timeout) of the old container's command line, or null.
      type: int
    stop_timeout:
      description: The Docker stop timeout it was stopped with (O(stop_timeout), raised above
        RV(drain.shutdown_timeout)).
      type: int
gpu_release:
  description:
    - The wait for a failed container's GPU memory before the previous container was started
      again (O(gpu_release_timeout)).
  returned: when a failed container was removed to restore a previous one
  type: dict
  contains:
    container:
      description: The failed container's name.
      type: str
    pids:
      description: Its host PIDs that were waited for.
      type: list
      elements: int
    released:
      description:
        - True - none of them holds a CUDA context any more; false - the bound passed with
          RV(gpu_release.remaining) still listed; null - it could not be told
          (RV(gpu_release.reason)).
      type: bool
    reason:
      description:
        - Why it could not be told or did not wait, such as C(nvidia-smi was not found on the
          host) (a host without the NVIDIA driver), C(the failed container had no process left
          to wait for), C(the wait is off (timeout 0)).
      type: str
    polls:
      description: How many times nvidia-smi was asked.
      type: int
    seconds:
      description: How long the wait took.
      type: float
    timeout:
      description: The bound, O(gpu_release_timeout).
      type: int
    remaining:
      description: PIDs still listed at the last answer.
      type: list
      elements: int
    remaining_mib:
      description: GPU memory the remaining processes held at the last answer (MiB), if known.
      type: int
    last_error:
      description: The last nvidia-smi query that failed, or null.
      type: str
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

import json

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container import (
    validate_options,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container_run import (
    ModuleFailure,
    VllmContainerRun,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_docker import (
    DOCKER_IMPORT_ERROR,
    HAS_DOCKER,
    DockerError,
    connect,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_options import (
    ENGINE_OPTIONS,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_options import (
    argument_spec as engine_argument_spec,
)


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
            "drain_timeout": {"type": "int", "default": 60},
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
            "gpu_release_timeout": {"type": "int", "default": 60},
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

    try:
        client = connect(module.params["docker_host"])
    except DockerError as err:
        module.fail_json(
            msg=f"cannot reach the Docker engine: {err}", kind="docker_error", rolled_back=False
        )
    run = VllmContainerRun(
        module.params,
        module.check_mode,
        client,
        run_command=lambda argv: module.run_command(argv, environ_update={"LC_ALL": "C"}),
        get_bin_path=module.get_bin_path,
    )
    try:
        run.run()
    except ModuleFailure as err:
        result = dict(run.result)
        result.update(err.details)
        if run.warnings:
            result["warnings"] = run.warnings
        module.fail_json(msg=err.msg, **result)
    except DockerError as err:
        module.fail_json(msg=f"Docker error: {err}", kind="docker_error", **run.result)
    for warning in run.warnings:
        module.warn(warning)
    result = run.result
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**json.loads(json.dumps(result, default=str)))


if __name__ == "__main__":
    main()
