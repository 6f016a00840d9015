#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_benchmark
short_description: Run a bounded serving benchmark inside a running vLLM container
version_added: 1.1.0
description:
  - Runs vLLM's own load generator, C(vllm bench serve) of the serving image, inside the
    serving container (C(docker exec) through the Docker SDK) against that container's own
    endpoint, C(http://127.0.0.1:<port>) inside it. No other address can be targeted and
    nothing is installed on the host.
  - One run per concurrency level (O(concurrency)), each with the same random prompts of
    O(input_len) tokens, O(output_len) output tokens (C(--ignore-eos)), O(num_prompts) requests
    and a fixed O(seed), sent as fast as the level allows.
  - Every level runs under a hard time limit (O(timeout) seconds, C(timeout -s KILL) inside the
    container); a killed level is reported as aborted with every request counted as failed.
  - O(api_key) is sent as a bearer token (the C(Authorization) header) by vLLM's request
    functions, passed in the exec's environment (C(OPENAI_API_KEY)), never on a command line.
  - Per level it returns TTFT, TPOT, ITL and end-to-end latency (mean, p50, p99, milliseconds),
    request and output-token throughput, completed and failed requests, and the distinct
    errors of the failed ones; then a regression verdict against O(thresholds).
  - "Supported vLLM versions: 0.8.5 and later, the releases that ship C(vllm bench serve).
    0.8.5 to 0.9.0 have only the completions backend (C(--endpoint-type openai)); 0.9.1 adds
    chat; 0.11.0 renamed C(--endpoint-type) to C(--backend) and can skip the initial test
    request (C(--ready-check-timeout-sec 0)). Before 0.11 a level whose first request fails is
    aborted by vLLM without figures and reported as such. Only 0.32.0 is checked against a real
    engine; older versions follow vLLM's pull requests (see module_utils/vllm_bench.py)."
  - Older images (their C(benchmarks/benchmark_serving.py) is in vLLM's source tree, not the
    image) and images whose vLLM version cannot be read are refused.
  - The figures are the serving host's; on the CPU test engine they are CPU figures.
author:
  - llmops.gpu_serving contributors
requirements:
  - Docker SDK for Python (C(docker)) 5.0 or later on the target.
  - A running container of an image with C(vllm bench serve) and coreutils C(timeout).
attributes:
  check_mode:
    support: full
    details:
      - It sends load, so in check mode it sends nothing, runs nothing in the container and
        returns C(skipped=true) with a message that says so (the levels it would run are in
        RV(plan)).
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Changes no state (C(changed=false)); the result files it writes in the container's
        C(/tmp) are removed after each level. It does put load on the server while it runs.
options:
  container:
    description: Name or ID of the running vLLM container.
    type: str
    required: true
  port:
    description: Port the server listens on inside the container (not the published one).
    type: int
    default: 8000
  served_model_name:
    description: Model name the requests ask for (the server's C(--served-model-name)).
    type: str
    required: true
  tokenizer:
    description:
      - Path of the model inside the container, whose tokenizer makes and counts the prompts.
      - By default the container's own C(--model) argument (or C(vllm serve)'s positional model).
    type: str
  api_key:
    description: API key of the server, sent as a bearer token with every request.
    type: str
  api:
    description:
      - V(completions) sends C(/v1/completions) (every supported version); V(chat) sends
        C(/v1/chat/completions) through the model's chat template (0.9.1 and later).
    type: str
    choices: [completions, chat]
    default: completions
  concurrency:
    description: Concurrency levels (C(--max-concurrency)), one benchmark run each, in order.
    type: list
    elements: int
    default: [1, 4, 16]
  num_prompts:
    description: Requests per level.
    type: int
    default: 64
  input_len:
    description: Prompt length in tokens (random prompts of exactly this length).
    type: int
    default: 512
  output_len:
    description: Output tokens per request (C(--ignore-eos) keeps every answer this long).
    type: int
    default: 128
  ignore_eos:
    description: Pass C(--ignore-eos), so every answer has O(output_len) tokens.
    type: bool
    default: true
  seed:
    description: Seed of the random prompts (the same prompts for every level and run).
    type: int
    default: 0
  timeout:
    description: Hard limit in seconds for one level; the load generator is killed at it.
    type: int
    default: 600
  vllm_version:
    description:
      - vLLM version of the container's image, such as V(0.8.5). By default read from the
        image (label C(vllm.version), the OCI version label of a vLLM image, C(VLLM_VERSION),
        the tag).
    type: str
  thresholds:
    description: Regression thresholds; each one unset is not checked.
    type: dict
    suboptions:
      min_output_throughput:
        description: Floor on the output-token throughput (tokens/s) of every level.
        type: float
      max_p99_ttft_ms:
        description: Ceiling on the p99 time to first token (ms) of every level.
        type: float
      max_failed_requests:
        description: Most failed requests allowed in one level.
        type: int
  fail_on_regression:
    description:
      - Fail the task when a threshold is violated, with the figures in the message. V(false)
        returns the verdict (for a play that records the figures before it fails).
    type: bool
    default: true
  docker_host:
    description: Docker daemon URL; by default the environment's (C(DOCKER_HOST) or the socket).
    type: str
notes:
  - A level with no successful request has no latency figures (vLLM writes 0.0 there; this
    module returns null), so it violates any floor or ceiling that is set.
seealso:
  - module: llmops.gpu_serving.vllm_container
"""

EXAMPLES = r"""
- name: Benchmark the server at three concurrency levels
  llmops.gpu_serving.vllm_benchmark:
    container: coder
    served_model_name: coder
    tokenizer: /qwen/qwen3-30b-a3b
    api_key: "{{ vllm_api_key }}"
    concurrency: [1, 8, 32]
    num_prompts: 128
    input_len: 1024
    output_len: 256
    timeout: 900
    thresholds:
      min_output_throughput: 400
      max_p99_ttft_ms: 5000
  register: bench

- name: Show the table
  ansible.builtin.debug:
    var: bench.table
"""

RETURN = r"""
levels:
  description: One entry per concurrency level, in the order they ran.
  returned: when not in check mode
  type: list
  elements: dict
  contains:
    concurrency:
      description: C(--max-concurrency) of the level.
      type: int
    num_prompts:
      description: Requests sent.
      type: int
    completed:
      description: Requests that succeeded.
      type: int
    failed:
      description: Requests that failed (all of them for an aborted level).
      type: int
    duration_s:
      description: Wall time of the level's requests in seconds.
      type: float
    request_throughput:
      description: Completed requests per second.
      type: float
    output_throughput:
      description: Output tokens per second.
      type: float
    total_token_throughput:
      description: Input and output tokens per second.
      type: float
    total_input_tokens:
      description: Prompt tokens of the completed requests.
      type: int
    total_output_tokens:
      description: Output tokens of the completed requests.
      type: int
    ttft_ms:
      description: "Time to first token: mean, p50, p99 (null without a completed request)."
      type: dict
    tpot_ms:
      description: "Time per output token after the first: mean, p50, p99."
      type: dict
    itl_ms:
      description: "Inter-token latency: mean, p50, p99."
      type: dict
    e2el_ms:
      description: "End-to-end request latency: mean, p50, p99."
      type: dict
    errors:
      description: Distinct error messages of failed requests (at most five).
      type: list
      elements: str
    aborted:
      description: Why the level left no result (time limit, vLLM refused), else null.
      type: str
    rc:
      description: Exit status of the load generator (137 when killed at the time limit).
      type: int
  sample:
    - concurrency: 4
      num_prompts: 8
      completed: 8
      failed: 0
      output_throughput: 571.43
      ttft_ms: {mean: 9.1, p50: 8.2, p99: 15.3}
table:
  description: The levels as text lines, a header first (columns separated by C( | )).
  returned: when not in check mode
  type: list
  elements: str
verdict:
  description: The regression check - checked, passed, thresholds, violations (one sentence each).
  returned: when not in check mode
  type: dict
html:
  description: A self-contained HTML page with an inline SVG of latency against throughput.
  returned: when not in check mode
  type: str
plan:
  description:
    - What runs - tool, vllm_version, concurrency, num_prompts, input_len, output_len, api,
      seed, timeout, endpoint and the argv of the first level.
  returned: always
  type: dict
image:
  description: Image reference, image ID and vLLM version of the container measured.
  returned: always
  type: dict
args:
  description: The container's command line (its vLLM flags), the API key masked.
  returned: always
  type: list
  elements: str
skipped:
  description: True in check mode, where nothing is sent.
  returned: in check mode
  type: bool
"""

import json
import uuid
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_bench import (
    KILLED_STATUSES,
    BenchError,
    aborted_level,
    bench_argv,
    check_thresholds,
    parse_level,
    render_html,
    render_table,
    validate_options,
    with_time_limit,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_flags import (
    detect_vllm_version,
    mask_args,
    parse_version,
)

try:
    import docker
    from docker.errors import DockerException, NotFound

    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError as import_error:  # pragma: no cover - exercised where the SDK is missing
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = import_error

# Inside the container; each level writes into its own subdirectory and removes it.
RESULT_DIR = "/tmp/llmops-bench"
# The Docker API call waits for the exec; it must outlive the kill inside the container.
SOCKET_GRACE_S = 60


def container_model(args: list[str]) -> str | None:
    """The model path of a vLLM command line: ``--model X`` or ``vllm serve``'s positional."""
    for index, word in enumerate(args):
        if word == "--model" and index + 1 < len(args):
            return args[index + 1]
        if word.startswith("--model="):
            return word.split("=", 1)[1]
    if "serve" in args:
        rest = args[args.index("serve") + 1 :]
        if rest and not rest[0].startswith("-"):
            return rest[0]
    return args[0] if args and not args[0].startswith("-") else None


class Benchmark:
    """One run: the container's facts, one exec per level, the verdict."""

    def __init__(self, module: AnsibleModule):
        self.module = module
        self.p = module.params
        timeout = self.p["timeout"] + SOCKET_GRACE_S
        if self.p["docker_host"]:
            self.client = docker.DockerClient(base_url=self.p["docker_host"], timeout=timeout)
        else:
            self.client = docker.from_env(timeout=timeout)
        try:
            self.container = self.client.containers.get(self.p["container"])
        except NotFound:
            module.fail_json(msg=f"container {self.p['container']} does not exist")
        if self.container.status != "running":
            module.fail_json(
                msg=f"container {self.p['container']} is {self.container.status}, not running"
            )
        attrs = self.container.attrs
        config = attrs.get("Config") or {}
        self.args = [str(a) for a in (config.get("Entrypoint") or []) + (config.get("Cmd") or [])]
        image_ref = config.get("Image") or ""
        image = self.client.images.get(attrs.get("Image"))
        labels = image.attrs.get("Config", {}).get("Labels") or {}
        env = dict(
            item.split("=", 1)
            for item in image.attrs.get("Config", {}).get("Env") or []
            if "=" in item
        )
        version_text = self.p["vllm_version"] or detect_vllm_version(image_ref, labels, env)[0]
        self.version = parse_version(version_text)
        self.image = {"ref": image_ref, "id": image.id, "vllm_version": version_text}
        self.options = dict(self.p)
        self.options["tokenizer"] = self.p["tokenizer"] or container_model(self.args)
        if not self.options["tokenizer"]:
            module.fail_json(msg="cannot read the model path from the container; set tokenizer")

    def run_level(self, concurrency: int) -> dict[str, Any]:
        run_dir = f"{RESULT_DIR}/{uuid.uuid4().hex[:12]}"
        argv = bench_argv(self.options, self.version, concurrency, run_dir, "result.json")
        env = {"OPENAI_API_KEY": self.p["api_key"]} if self.p["api_key"] else None
        self.container.exec_run(["mkdir", "-p", run_dir])
        try:
            done = self.container.exec_run(
                with_time_limit(argv, self.p["timeout"]), environment=env, demux=False
            )
            stdout = (done.output or b"").decode("utf-8", errors="replace")
            saved = self.container.exec_run(["cat", f"{run_dir}/result.json"])
        finally:
            self.container.exec_run(["rm", "-rf", run_dir])
        num_prompts = self.p["num_prompts"]
        if done.exit_code in KILLED_STATUSES:
            level = aborted_level(
                concurrency,
                num_prompts,
                f"killed at the time limit ({self.p['timeout']} s)",
                stdout,
            )
        elif saved.exit_code != 0 or done.exit_code != 0:
            level = aborted_level(
                concurrency, num_prompts, f"vllm bench serve exited {done.exit_code}", stdout
            )
        else:
            try:
                level = parse_level(json.loads(saved.output), concurrency, stdout)
            except ValueError:
                level = aborted_level(concurrency, num_prompts, "unreadable result JSON", stdout)
        level["rc"] = done.exit_code
        return level


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True},
            "port": {"type": "int", "default": 8000},
            "served_model_name": {"type": "str", "required": True},
            "tokenizer": {"type": "str"},
            "api_key": {"type": "str", "no_log": True},
            "api": {"type": "str", "default": "completions", "choices": ["completions", "chat"]},
            "concurrency": {"type": "list", "elements": "int", "default": [1, 4, 16]},
            "num_prompts": {"type": "int", "default": 64},
            "input_len": {"type": "int", "default": 512},
            "output_len": {"type": "int", "default": 128},
            "ignore_eos": {"type": "bool", "default": True},
            "seed": {"type": "int", "default": 0},
            "timeout": {"type": "int", "default": 600},
            "vllm_version": {"type": "str"},
            "thresholds": {
                "type": "dict",
                "options": {
                    "min_output_throughput": {"type": "float"},
                    "max_p99_ttft_ms": {"type": "float"},
                    "max_failed_requests": {"type": "int"},
                },
            },
            "fail_on_regression": {"type": "bool", "default": True},
            "docker_host": {"type": "str"},
        },
        supports_check_mode=True,
    )
    errors = validate_options(module.params)
    if errors:
        module.fail_json(msg="; ".join(errors), errors=errors)
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker>=5"), exception=str(DOCKER_IMPORT_ERROR))
    try:
        bench = Benchmark(module)
        levels_planned = module.params["concurrency"]
        first = bench_argv(
            bench.options, bench.version, levels_planned[0], RESULT_DIR, "result.json"
        )
    except BenchError as err:
        module.fail_json(msg=str(err))
    except DockerException as err:
        module.fail_json(msg=f"Docker error: {err}")
    p = module.params
    result: dict[str, Any] = {
        "changed": False,
        "image": bench.image,
        "args": mask_args(bench.args),
        "plan": {
            "tool": "vllm bench serve",
            "vllm_version": bench.image["vllm_version"],
            **{k: p[k] for k in ("concurrency", "num_prompts", "input_len", "output_len", "api")},
            "seed": p["seed"],
            "timeout": p["timeout"],
            "endpoint": f"http://127.0.0.1:{p['port']} inside {p['container']}",
            "argv": first,
        },
    }
    if module.check_mode:
        module.exit_json(
            skipped=True,
            msg="check mode: the benchmark sends load, so nothing was sent",
            **result,
        )
    try:
        levels = [bench.run_level(level) for level in levels_planned]
    except DockerException as err:
        module.fail_json(msg=f"Docker error: {err}", **result)
    verdict = check_thresholds(levels, p["thresholds"])
    meta = {
        "container": p["container"],
        "image": bench.image["ref"],
        "vLLM": bench.image["vllm_version"],
        "load": f"{p['num_prompts']} requests per level, {p['input_len']} tokens in, "
        f"{p['output_len']} out, {p['api']}",
    }
    result.update(
        levels=levels,
        table=render_table(levels),
        verdict=verdict,
        html=render_html(p["container"], levels, meta, verdict),
    )
    if p["fail_on_regression"] and not verdict["passed"]:
        module.fail_json(msg="regression: " + "; ".join(verdict["violations"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
