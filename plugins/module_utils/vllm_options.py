# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine options: one table of vLLM's serving settings the collection types.

Private module_utils of llmops.gpu_serving: the API may change between releases. Each option's
type, choices, range and CLI flag is written here once. The modules build their argument specs
from it (argument_spec), the vllm_container module checks ranges with it (range_errors), the
command line takes the flag from it, and tests/unit checks that every document that lists an
option (the modules' DOCUMENTATION, the vllm_memory_plan filter's, the vllm_server role's
argument specs) says the same. Which vLLM releases have a flag is vllm_flags.FLAG_RULES.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EngineOption:
    """One typed setting of ``vllm serve``."""

    type: str
    flag: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    source: str = ""

    def range_text(self) -> str:
        left = "(" if self.low_open else "["
        high = "" if self.high is None else f"{self.high:g}"
        return f"{left}{self.low:g}, {high or 'inf'}]" if self.low is not None else ""


# vLLM 0.32.0's vllm/config/model.py: ModelDType = Literal["auto", "half", "float16",
# "bfloat16", "float", "float32"] (read from the CPU test image); 0.8.5's --dtype has the same.
DTYPE_CHOICES = ("auto", "half", "float16", "bfloat16", "float", "float32")
# --kv-cache-dtype: 0.8.5 offers auto, fp8, fp8_e5m2, fp8_e4m3; 0.32.0's CacheDType (vllm/
# config/cache.py) adds float16, bfloat16 and model-specific formats (fp8_ds_mla, ...). The
# collection types the four both have, which its memory planner sizes (one byte per element
# for the fp8 ones); others go through extra_args.
KV_CACHE_DTYPE_CHOICES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")

ENGINE_OPTIONS: dict[str, EngineOption] = {
    "tensor_parallel_size": EngineOption("int", "--tensor-parallel-size", low=1),
    "dtype": EngineOption(
        "str", "--dtype", choices=DTYPE_CHOICES, source="vllm/config/model.py ModelDType"
    ),
    "max_model_len": EngineOption("int", "--max-model-len", low=1),
    "max_num_batched_tokens": EngineOption("int", "--max-num-batched-tokens", low=1),
    "gpu_memory_utilization": EngineOption(
        "float", "--gpu-memory-utilization", low=0, high=1, low_open=True
    ),
    # Which sizes a release takes is vllm_flags (BLOCK_SIZE_CHOICES until 0.12).
    "block_size": EngineOption("int", "--block-size", low=1),
    "kv_cache_dtype": EngineOption(
        "str",
        "--kv-cache-dtype",
        choices=KV_CACHE_DTYPE_CHOICES,
        source="vllm/config/cache.py CacheDType (0.32.0); 0.8.5's --kv-cache-dtype choices",
    ),
    "enable_chunked_prefill": EngineOption("bool", "--enable-chunked-prefill"),
    "swap_space": EngineOption("float", "--swap-space", low=0),
    "tokenizer_pool_size": EngineOption("int", "--tokenizer-pool-size", low=0),
    "disable_custom_all_reduce": EngineOption("bool", "--disable-custom-all-reduce"),
}


def argument_spec(names: Iterable[str], **defaults: Any) -> dict[str, dict[str, Any]]:
    """AnsibleModule argument_spec entries of the named options (``defaults`` by name)."""
    spec: dict[str, dict[str, Any]] = {}
    for name in names:
        option = ENGINE_OPTIONS[name]
        entry: dict[str, Any] = {"type": option.type}
        if option.choices is not None:
            entry["choices"] = list(option.choices)
        if name in defaults:
            entry["default"] = defaults[name]
        spec[name] = entry
    return spec


def range_errors(params: Mapping[str, Any], names: Iterable[str] | None = None) -> list[str]:
    """Errors of the options' values against their ranges and choices (None is not checked)."""
    errors: list[str] = []
    for name in ENGINE_OPTIONS if names is None else names:
        option = ENGINE_OPTIONS[name]
        value = params.get(name)
        if value is None:
            continue
        if option.choices is not None and value not in option.choices:
            errors.append(
                f"{name} must be one of {', '.join(map(str, option.choices))}, got {value!r}"
            )
            continue
        if option.low is None or isinstance(value, bool):
            continue
        too_low = value <= option.low if option.low_open else value < option.low
        too_high = option.high is not None and value > option.high
        if too_low or too_high:
            errors.append(f"{name} must be in {option.range_text()}, got {value}")
    return errors
