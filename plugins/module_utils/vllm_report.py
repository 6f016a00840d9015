# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The serving report (/etc/llmops/serving.json) from one verified vllm_container result.

Private module_utils of llmops.gpu_serving: the API may change between releases. The
vllm_serving_report filter is its user (tasks/report.yml of the vllm_server role); everything
here is a pure function on plain data, the clock passed in.

A re-run on the same container must not lose what its start proved: vLLM logs its memory
figures once, at startup, and Docker's json-file log rotates them away on a busy server (the
seed's 0.8.5 logs every prompt at INFO). So for the container the last report describes (same
ID, verified), a figure the new result lacks (null) keeps the verified value, the start's time
and duration are kept, and so is the benchmark measured on it. ``kept_from_verified_start``
lists what was kept; a figure the new result does have replaces the old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1
# Figures measured at the start (the log's memory report and what derives from it).
STARTUP_FIGURES = ("memory", "metrics", "budget", "plan_comparison")
# What belongs to the start itself, not to this run.
START_FACTS = ("ready_seconds", "verified_at", "benchmark")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def benchmark_record(
    benchmark: Mapping[str, Any] | None, settings: Mapping[str, Any] | None, now: str
) -> dict[str, Any] | None:
    """What the report keeps of a vllm_benchmark result (None without one with levels)."""
    if not isinstance(benchmark, Mapping) or benchmark.get("levels") is None:
        return None
    return {
        "tool": _mapping(benchmark.get("plan")).get("tool"),
        "measured_at": now,
        "image": benchmark.get("image"),
        "args": benchmark.get("args"),
        "settings": dict(settings) if isinstance(settings, Mapping) else settings,
        "levels": benchmark.get("levels"),
        "verdict": benchmark.get("verdict"),
    }


def _model_section(
    manifest: Mapping[str, Any], host_path: str, container_path: str, manifest_sha256: str | None
) -> dict[str, Any]:
    files = manifest.get("files") if isinstance(manifest.get("files"), list) else []
    sizes = [f.get("size") for f in files if isinstance(f, Mapping)]
    return {
        "host_path": host_path,
        "container_path": container_path,
        "source": manifest.get("source"),
        "revision": manifest.get("revision"),
        "files": len(files),
        "bytes": sum(size for size in sizes if isinstance(size, int)),
        "manifest_sha256": manifest_sha256,
    }


def _driver_section(gpu_info: Mapping[str, Any]) -> dict[str, Any]:
    gpus = [g for g in gpu_info.get("gpus") or [] if isinstance(g, Mapping)]
    names: list[str] = []
    for gpu in gpus:
        if gpu.get("name") and gpu["name"] not in names:
            names.append(gpu["name"])
    totals = [g["memory_total_mib"] for g in gpus if isinstance(g.get("memory_total_mib"), int)]
    return {
        "version": gpu_info.get("driver_version"),
        "cuda_version": gpu_info.get("cuda_version"),
        "gpus": gpu_info.get("gpu_count"),
        "gpu_names": names,
        "memory_total_mib": min(totals) if totals else None,
    }


def _fill_unknown(new: Any, old: Any) -> tuple[Any, bool]:
    """``new`` with every null (or missing) figure taken from ``old``; and whether any was."""
    if new is None:
        return old, old is not None
    if isinstance(new, Mapping) and isinstance(old, Mapping):
        merged = dict(new)
        kept = False
        for key, value in old.items():
            if value is None:
                continue
            if key not in merged or merged[key] is None:
                merged[key] = value
                kept = True
            elif isinstance(merged[key], Mapping) and isinstance(value, Mapping):
                merged[key], inner = _fill_unknown(merged[key], value)
                kept = kept or inner
        return merged, kept
    return new, False


def serving_report(
    result: Mapping[str, Any],
    *,
    host: str,
    served_model_name: str,
    container_name: str,
    image: str,
    model_host_path: str,
    model_container_path: str,
    now: str,
    gpu_info: Mapping[str, Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
    manifest_sha256: str | None = None,
    settings: Mapping[str, Any] | None = None,
    preflight: Mapping[str, Any] | None = None,
    previous: Any = None,
    benchmark: Mapping[str, Any] | None = None,
    benchmark_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of a verified start (``result``: vllm_container's), merged with the last one.

    ``previous`` is the report the host had (anything else than a dict is ignored: a first
    run, or a file that did not parse). ``benchmark`` is a vllm_benchmark result of this run.
    """
    result = _mapping(result)
    preflight = _mapping(preflight)
    container = _mapping(result.get("container"))
    image_facts = _mapping(result.get("image"))
    smoke = _mapping(result.get("smoke_test"))
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "host": host,
        "endpoint": result.get("endpoint"),
        "served_model_name": served_model_name,
        "container": {
            "name": container_name,
            "id": container.get("id"),
            "image": image,
            "image_id": image_facts.get("id"),
            "image_digest": image_facts.get("digest"),
            "vllm_version": image_facts.get("vllm_version"),
            "args": list(result.get("args") or []),
            "dropped_flags": list(result.get("dropped_flags") or []),
        },
        "driver": _driver_section(_mapping(gpu_info)),
        "model": _model_section(
            _mapping(manifest), model_host_path, model_container_path, manifest_sha256
        ),
        "settings": dict(settings) if isinstance(settings, Mapping) else None,
        "autotuned": preflight.get("autotuned"),
        "plan": preflight.get("plan"),
        "smoke_test": "passed" if smoke.get("passed") else "skipped",
        # A serving cluster member: role, backend, layout, join proof and its ranks' memory.
        "cluster": result.get("cluster"),
        "verified_at": now,
        "ready_seconds": result.get("ready_seconds"),
    }
    for figure in STARTUP_FIGURES:
        report[figure] = result.get(figure)

    old = _mapping(previous)
    same_start = (
        container.get("id") is not None
        and _mapping(old.get("container")).get("id") == container.get("id")
        and old.get("verified_at") is not None
    )
    kept: list[str] = []
    if same_start:
        for fact in START_FACTS:
            if fact in old:
                report[fact] = old[fact]
        for figure in STARTUP_FIGURES:
            report[figure], filled = _fill_unknown(report[figure], old.get(figure))
            if filled:
                kept.append(figure)
    record = benchmark_record(benchmark, benchmark_settings, now)
    if record is not None:
        report["benchmark"] = record
    if kept:
        report["kept_from_verified_start"] = kept
    return report
