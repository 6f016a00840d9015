# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vllm_memory_plan filter; its documentation is vllm_memory_plan.yml beside this file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import (
    plan_memory,
    suggest_fit,
)

# Inventory and extra-vars often carry numbers as strings ("-e gpu_memory_gib=21.66").
INTEGER_OPTIONS = frozenset(
    {
        "tensor_parallel_size",
        "max_model_len",
        "block_size",
        "weights_bytes",
        "max_num_batched_tokens",
        "max_num_seqs",
    }
)
FLOAT_OPTIONS = frozenset(
    {
        "gpu_memory_utilization",
        "gpu_memory_gib",
        "kv_cache_gib",
        "swap_space_gib",
        "activation_gib",
        "non_torch_gib",
        "cuda_graph_gib",
        "min_concurrency",
    }
)


def vllm_memory_plan(
    model_config: Any, suggest: bool = False, min_concurrency: Any = 1.0, **options: Any
) -> dict[str, Any]:
    """Plan vLLM's per-GPU memory for ``model_config`` (a dict or config.json text)."""
    if isinstance(model_config, str):
        try:
            model_config = json.loads(model_config)
        except ValueError as exc:
            raise AnsibleFilterError(f"vllm_memory_plan: input is not JSON: {exc}") from exc
    if not isinstance(model_config, Mapping):
        raise AnsibleFilterError(
            "vllm_memory_plan: input must be the model's config.json as a dict or JSON text, "
            f"got {type(model_config).__name__}"
        )
    try:
        coerced = {name: _coerce(name, value) for name, value in options.items()}
        if not suggest:
            return plan_memory(model_config, **coerced)
        fit = suggest_fit(
            model_config,
            min_concurrency=_coerce("min_concurrency", min_concurrency),
            **coerced,
        )
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"vllm_memory_plan: {exc}") from exc
    plan = fit.pop("plan")
    plan["suggestion"] = fit
    return plan


def _coerce(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if name in INTEGER_OPTIONS:
            return int(text)
        if name in FLOAT_OPTIONS:
            return float(text)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    return value


class FilterModule:
    """llmops.gpu_serving memory-planning filters."""

    def filters(self) -> dict[str, Any]:
        return {"vllm_memory_plan": vllm_memory_plan}
