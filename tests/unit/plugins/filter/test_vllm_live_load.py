"""The live load of a vLLM server, read from real /metrics pages (tests/fixtures/vllm_metrics)."""

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_serving.plugins.filter.vllm_live_load import vllm_live_load
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_metrics import (
    live_load,
    samples,
)

PAGES = Path(__file__).resolve().parents[3] / "fixtures" / "vllm_metrics"


def page(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def test_the_real_032_engine_under_load():
    # 12 requests sent at once to the CPU engine, scraped 3 s later.
    load = live_load(page("vllm-0.32.0-cpu_12-running.txt"))
    assert load == {
        "requests_running": 12,
        "requests_waiting": 0,
        "kv_cache_usage_pct": 1.33,
        "kv_cache_usage_metric": "vllm:kv_cache_usage_perc",
        "engines": 1,
        "summary": "12 running, 0 waiting, KV 1.33 %",
        "missing": [],
    }


def test_the_real_032_engine_idle_reports_zeros_not_missing():
    load = live_load(page("vllm-0.32.0-cpu_idle.txt"))
    assert (load["requests_running"], load["requests_waiting"], load["kv_cache_usage_pct"]) == (
        0,
        0,
        0.0,
    )
    assert load["missing"] == []


def test_the_waiting_by_reason_breakdown_is_not_added_to_waiting():
    text = page("vllm-0.32.0-cpu_12-running.txt")
    names = {name for name, _labels, _value in samples(text)}
    assert "vllm:num_requests_waiting_by_reason" in names
    assert live_load(text)["requests_waiting"] == 0


def test_a_server_before_the_rename_reports_gpu_cache_usage():
    load = live_load(page("production-stack-318_gpu-cache-usage.txt"))
    assert load["kv_cache_usage_metric"] == "vllm:gpu_cache_usage_perc"
    assert load["kv_cache_usage_pct"] == 0.0
    assert load["requests_running"] == 0


def test_a_page_without_samples_has_no_figures():
    load = live_load(page("functionary-263_no-samples.txt"))
    assert load["requests_running"] is None
    assert load["kv_cache_usage_pct"] is None
    assert load["summary"] == "? running, ? waiting, KV ? %"
    assert load["missing"] == [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc",
    ]


def test_data_parallel_engines_add_requests_and_report_the_fullest_cache():
    # Two engines of one server: the real 0.32 sample lines with a second engine label.
    lines = [
        line
        for line in page("vllm-0.32.0-cpu_12-running.txt").splitlines()
        if line.startswith(("vllm:num_requests_running{", "vllm:kv_cache_usage_perc{"))
    ]
    second = [line.replace('engine="0"', 'engine="1"').replace(" 12.0", " 3.0") for line in lines]
    second = [
        line.replace("0.013307288487364177", "0.5") if "kv_cache" in line else line
        for line in second
    ]
    load = live_load("\n".join(lines + second))
    assert load["requests_running"] == 15
    assert load["kv_cache_usage_pct"] == 50.0
    assert load["engines"] == 2


def test_the_filter_takes_bytes_and_refuses_other_types():
    assert vllm_live_load(page("vllm-0.32.0-cpu_idle.txt").encode())["requests_running"] == 0
    with pytest.raises(AnsibleFilterError, match="as a string, got dict"):
        vllm_live_load({})
