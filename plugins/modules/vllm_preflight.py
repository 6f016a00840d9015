#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Deferred annotations: targets may run a Python older than 3.10.
from __future__ import annotations

DOCUMENTATION = r"""
module: vllm_preflight
short_description: Say whether a vLLM configuration fits the GPUs before anything is started
version_added: 1.0.0
description:
  - Reads the synced model directory on the host (C(config.json), the safetensors index or the
    weight files' sizes), takes the GPUs' memory (from P(llmops.gpu_serving.nvidia_gpu_info#module)
    facts or an explicit O(gpu_memory_gib)) and predicts the memory budget vLLM will report at
    startup (weights, activation and non-torch overhead, KV cache GiB, GPU blocks, KV tokens and
    the maximum concurrency for O(max_model_len)).
  - Fails when the configuration cannot serve O(min_concurrency) requests of O(max_model_len)
    tokens, with the numbers and the largest C(max_model_len) and the smallest
    C(gpu_memory_utilization) that would fit, so an operator learns it before pulling a 20 GB
    image and waiting for vLLM to profile.
  - With O(autotune) it chooses settings that fit instead, first a higher
    C(gpu_memory_utilization) up to O(autotune_max_gpu_memory_utilization), else a shorter
    C(max_model_len), and says what it chose in RV(autotuned) and RV(settings).
  - The arithmetic is the one of the P(llmops.gpu_serving.vllm_memory_plan#filter) filter.
  - Changes nothing on the host.
author:
  - llmops.gpu_serving contributors
options:
  model_path:
    description: The model directory on the host, as vLLM will load it (the host side of the mount).
    type: path
    required: true
  gpus:
    description:
      - The GPUs, as RV(llmops.gpu_serving.nvidia_gpu_info#module:gpus) returns them
        (C(memory_total_mib) is used). The smallest card bounds the budget.
      - Required unless O(gpu_memory_gib) is given.
    type: list
    elements: dict
  gpu_memory_gib:
    description:
      - What vLLM logs as C(total_gpu_memory) for one card. Takes precedence over O(gpus); use the
        figure from an earlier startup log for an exact plan.
    type: float
  gpu_reserved_gib:
    description:
      - Memory the driver and firmware keep from each card, subtracted from nvidia-smi's
        C(memory.total) to estimate what CUDA reports. 0.34 GiB is the seed's 22 GB cards.
    type: float
    default: 0.34
  tensor_parallel_size:
    description: GPUs the model is split over (in a serving cluster, over every host's GPUs).
    type: int
    default: 1
  pipeline_parallel_size:
    description:
      - Pipeline stages of a serving cluster's layout. Above 1 the plan is for the rank of the
        stage that holds the most layers (its KV cache per token is the largest, and vLLM sizes
        the engine's cache by its smallest rank), with that stage's share of the weights.
    type: int
    default: 1
  nnodes:
    description:
      - Hosts a serving cluster's layout spans. This host runs O(tensor_parallel_size) x
        O(pipeline_parallel_size) / O(nnodes) ranks, one per GPU, which must be a whole number
        no larger than its GPU count; the smallest of those GPUs is planned for.
    type: int
    default: 1
  dtype:
    description: Serving dtype (C(auto) takes the config's C(torch_dtype)).
    type: str
    default: auto
    choices: [auto, half, float16, bfloat16, float, float32]
  max_model_len:
    description: Context length of one request; the config's when omitted.
    type: int
  block_size:
    description: KV cache block size in tokens.
    type: int
    default: 16
  gpu_memory_utilization:
    description: Fraction of each card vLLM may use.
    type: float
    default: 0.9
  kv_cache_dtype:
    description: KV cache dtype; C(fp8) variants store one byte per element.
    type: str
    default: auto
    choices: [auto, fp8, fp8_e4m3, fp8_e5m2]
  max_num_batched_tokens:
    description: Tokens per scheduler step; sizes the activation estimate.
    type: int
  swap_space_gib:
    description: CPU swap space per GPU in GiB (V0); gives the CPU block count.
    type: float
  kv_cache_gib:
    description:
      - The KV cache size in GiB when the engine is given one instead of deriving it from GPU
        memory, such as vLLM's CPU engine with C(VLLM_CPU_KVCACHE_SPACE). The plan then counts
        blocks and tokens in exactly that size; O(gpu_memory_utilization) does not change it, so
        O(autotune) can only shorten O(max_model_len).
      - Unset, the KV cache is predicted from the GPUs' memory, the weights and the overhead.
    type: float
  min_concurrency:
    description:
      - How many requests of O(max_model_len) tokens the KV cache must hold at once. C(0) means
        one, which is vLLM's own startup condition.
    type: float
    default: 0
  autotune:
    description: Choose settings that meet O(min_concurrency) instead of failing.
    type: bool
    default: false
  autotune_max_gpu_memory_utilization:
    description: The highest C(gpu_memory_utilization) autotuning may choose.
    type: float
    default: 0.95
  fail_on_misfit:
    description: Fail when the configuration does not fit. With C(false) the result says so.
    type: bool
    default: true
  rope_scaling:
    description:
      - The RoPE scaling the server is started with (C(--rope-scaling), or C(rope_scaling) in
        C(--hf-overrides)); it replaces the config's and stretches the longest O(max_model_len)
        vLLM accepts.
    type: dict
  allow_long_max_model_len:
    description:
      - The server runs with C(VLLM_ALLOW_LONG_MAX_MODEL_LEN=1), so vLLM accepts an
        O(max_model_len) above the model's own; the preflight then does not refuse one.
    type: bool
    default: false
  check_compatibility:
    description:
      - Refuse what vLLM would refuse at startup on these GPUs, before anything is pulled,
        namely bf16 (O(dtype) C(bfloat16), or C(auto) on a bf16 checkpoint) below compute
        capability 8.0 and a context (O(max_model_len)) above the model's limit (after
        O(rope_scaling)); and warn about fp8 where it depends on the version (an e4m3
        O(kv_cache_dtype) below 8.9, an fp8 checkpoint below 8.9).
      - Turn off only for an engine that does not run on the listed GPUs, such as vLLM's CPU build.
      - The capability comes from O(gpus) (C(compute_capability), nvidia-smi's C(compute_cap)); the
        dtype checks are skipped, with a note in RV(compatibility_notes), when it is missing.
    type: bool
    default: true
  variable_prefix:
    description:
      - Prefix of the option names in messages, so that a role's user reads the variable to change
        (the role vllm_server passes C(vllm_server_)).
    type: str
    default: ""
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - llmops.gpu_serving.read_only
notes:
  - The activation peak and non-torch memory are estimates (calibrated on the seed's vLLM 0.8.5
    V0 log); RV(plan.notes) lists what the arithmetic cannot know for the model at hand. After
    launch, P(llmops.gpu_serving.vllm_container#module) reports vLLM's own figures and the role
    vllm_server shows both side by side.
seealso:
  - plugin: llmops.gpu_serving.vllm_memory_plan
    plugin_type: filter
  - module: llmops.gpu_serving.nvidia_gpu_info
"""

EXAMPLES = r"""
- name: Read the GPUs
  llmops.gpu_serving.nvidia_gpu_info:
  register: gpu_info

- name: Check that Qwen3-30B-A3B at 32K fits 4 x 22 GB before starting vLLM
  llmops.gpu_serving.vllm_preflight:
    model_path: /home/llm/model/qwen/qwen3-30b-a3b
    gpus: "{{ gpu_info.gpus }}"
    tensor_parallel_size: 4
    dtype: half
    max_model_len: 32768
    block_size: 32
    gpu_memory_utilization: 0.93
    max_num_batched_tokens: 4096
    min_concurrency: 4
  register: preflight

- name: Let it pick a context length that serves 8 requests at once
  llmops.gpu_serving.vllm_preflight:
    model_path: /home/llm/model/qwen/qwen3-30b-a3b
    gpus: "{{ gpu_info.gpus }}"
    tensor_parallel_size: 4
    max_model_len: 32768
    min_concurrency: 8
    autotune: true
  register: tuned
"""

RETURN = r"""
fits:
  description: Whether the settings in RV(settings) hold RV(min_concurrency) full-length requests.
  returned: always
  type: bool
message:
  description: One line with the figures, and what would fit when it does not.
  returned: always
  type: str
  sample: "fits: 188608 KV tokens per GPU (4.32 GiB, 5.76x max_model_len) for 1 x 32768 tokens"
settings:
  description: The max_model_len and gpu_memory_utilization to launch with (autotuned or as given).
  returned: always
  type: dict
  sample: {"max_model_len": 32768, "gpu_memory_utilization": 0.93}
requested:
  description: The max_model_len and gpu_memory_utilization that were asked for.
  returned: always
  type: dict
autotuned:
  description: What autotuning changed (C(changed)) and why (C(reason)); null when nothing.
  returned: always
  type: dict
suggestion:
  description: The largest fitting max_model_len and the smallest fitting gpu_memory_utilization.
  returned: always
  type: dict
min_concurrency:
  description: The concurrency target applied (at least 1).
  returned: always
  type: float
plan:
  description:
    - The predicted per-GPU budget for RV(settings), as the vllm_memory_plan filter returns it
      (kv_bytes_per_token, weights_gib, budget_gib, overhead_gib, kv_cache_gib, gpu_blocks,
      cpu_blocks, kv_cache_tokens, max_concurrency, fits, notes, inputs).
  returned: always
  type: dict
model:
  description: What was read from the model directory.
  returned: always
  type: dict
  contains:
    weights_bytes:
      description: Bytes of weights over all GPUs.
      type: int
    weights_source:
      description: Where the figure came from (the index's metadata or the file sizes).
      type: str
gpu_memory_gib:
  description: The per-card memory the plan used.
  returned: always
  type: float
compatibility_notes:
  description: What the compatibility check could not check or only warns about (also warnings).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_options import (
    argument_spec as engine_argument_spec,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_preflight import (
    PreflightError,
    preflight_of_options,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "model_path": {"type": "path", "required": True},
            "gpus": {"type": "list", "elements": "dict"},
            "gpu_memory_gib": {"type": "float"},
            "gpu_reserved_gib": {"type": "float", "default": 0.34},
            **engine_argument_spec(
                ("tensor_parallel_size", "dtype", "max_model_len", "block_size"),
                tensor_parallel_size=1,
                dtype="auto",
                block_size=16,
            ),
            "pipeline_parallel_size": {"type": "int", "default": 1},
            "nnodes": {"type": "int", "default": 1},
            **engine_argument_spec(
                ("gpu_memory_utilization", "kv_cache_dtype", "max_num_batched_tokens"),
                gpu_memory_utilization=0.9,
                kv_cache_dtype="auto",
            ),
            "swap_space_gib": {"type": "float"},
            "kv_cache_gib": {"type": "float"},
            "min_concurrency": {"type": "float", "default": 0.0},
            "autotune": {"type": "bool", "default": False},
            "autotune_max_gpu_memory_utilization": {"type": "float", "default": 0.95},
            "fail_on_misfit": {"type": "bool", "default": True},
            "rope_scaling": {"type": "dict"},
            "allow_long_max_model_len": {"type": "bool", "default": False},
            "check_compatibility": {"type": "bool", "default": True},
            "variable_prefix": {"type": "str", "default": ""},
        },
        required_one_of=[("gpus", "gpu_memory_gib")],
        supports_check_mode=True,
    )
    try:
        result, warnings = preflight_of_options(module.params)
    except PreflightError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
