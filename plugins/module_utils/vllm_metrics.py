# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The live load of a vLLM server from its Prometheus ``/metrics`` page.

Private to llmops.gpu_serving (the audit reads it through the vllm_live_load filter); not a
public API.

What vLLM exposes, by version (real pages in tests/fixtures/vllm_metrics/, sources there):

- ``vllm:num_requests_running`` and ``vllm:num_requests_waiting``: gauges in every version
  since 0.4, one sample per label set (``model_name``, and from the V1 engine ``engine``, one
  per data-parallel engine).
- KV-cache usage, a fraction (``1 means 100 percent usage``): ``vllm:gpu_cache_usage_perc`` up to
  the V1 rename; ``vllm:kv_cache_usage_perc`` after it (vLLM 0.32.0's CPU build exposes only the
  new name). Either may be present; the new one wins.

A page that lacks a figure gives None for it, never 0: an idle server and one that does not say
are different answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
# Newest name first: the first one the page has is used.
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")

# One sample of the Prometheus text format: name, optional {labels}, value, optional timestamp.
_SAMPLE_RE = re.compile(
    r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)"
    r"(?:\s+-?\d+)?\s*$"
)
_LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text page: (name, labels, value); comments skipped."""
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_RE.match(line)
        if not match:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = dict(_LABEL_RE.findall(match.group("labels") or ""))
        yield match.group("name"), labels, value


def live_load(text: str) -> dict[str, Any]:
    """Running and waiting requests and KV-cache usage now, from a /metrics page.

    Returns ``requests_running`` and ``requests_waiting`` (summed over engines),
    ``kv_cache_usage_pct`` (the fullest engine, in percent, 2 decimals), ``kv_cache_usage_metric``
    (the metric it came from), ``engines`` (how many label sets reported running requests),
    ``summary`` (the three in one line, ``?`` for a missing one) and ``missing`` (the figures
    the page did not have).
    """
    by_name: dict[str, list[float]] = {}
    for name, _labels, value in samples(text):
        if name in (RUNNING, WAITING, *KV_USAGE) and not math.isnan(value):
            by_name.setdefault(name, []).append(value)

    def total(name: str) -> int | None:
        values = by_name.get(name)
        return round(sum(values)) if values else None

    usage_metric = next((name for name in KV_USAGE if by_name.get(name)), None)
    usage = max(by_name[usage_metric]) if usage_metric else None
    result = {
        "requests_running": total(RUNNING),
        "requests_waiting": total(WAITING),
        "kv_cache_usage_pct": None if usage is None else round(usage * 100, 2),
        "kv_cache_usage_metric": usage_metric,
        "engines": len(by_name.get(RUNNING, [])),
    }

    def shown(value: Any) -> str:
        return "?" if value is None else str(value)

    result["summary"] = (
        f"{shown(result['requests_running'])} running, {shown(result['requests_waiting'])} "
        f"waiting, KV {shown(result['kv_cache_usage_pct'])} %"
    )
    result["missing"] = [
        label
        for label, key in (
            (RUNNING, "requests_running"),
            (WAITING, "requests_waiting"),
            (" or ".join(KV_USAGE), "kv_cache_usage_pct"),
        )
        if result[key] is None
    ]
    return result


__all__ = ["KV_USAGE", "RUNNING", "WAITING", "live_load", "samples"]
