"""vllm_container's main() on a container that already runs the configuration (an audit, a re-run).

The container, its log and its API are fakes; the log text is real (tests/fixtures/vllm_logs).
What this checks is the module's wiring: a running server is judged by its probes and the
startup section of its log, so request logs that quote failures do not fail it, and floors the
log cannot prove are reported as unchecked, not violated.
"""

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.gpu_serving.plugins.module_utils import (
    vllm_container_run,
    vllm_docker,
)
from ansible_collections.llmops.gpu_serving.plugins.modules import vllm_container

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
IMAGE_085 = json.loads((FIXTURES / "docker_inspect" / "image_standin_v0.8.5.json").read_text())
BASE = {
    "name": "coder",
    "image": "llmops-test/vllm-openai:v0.8.5",
    "pull": "never",
    "gpus": "all",
    "model_host_path": "/home/llm/model/qwen/qwen3-30b-a3b",
    "model_container_path": "/qwen/qwen3-30b-a3b",
    "served_model_name": ["coder"],
    "tensor_parallel_size": 4,
    "max_model_len": 32768,
    "block_size": 32,
    "host_cuda_version": "12.4",
    "host_driver_version": "550.144.03",
    "host_gpu_count": 4,
}
LOGS = FIXTURES / "vllm_logs"
METRICS = (FIXTURES / "docker_inspect" / "metrics_standin_v0.8.5.txt").read_text()
SEED = (LOGS / "v0_0.8.5_tp4_seed_success.log").read_text().splitlines()
SERVING = (LOGS / "v1_0.8.x_request_logs_serving.log").read_text().splitlines()
NCCL = (
    "torch.distributed.DistBackendError: NCCL error in: "
    "/pytorch/torch/csrc/distributed/c10d/NCCLUtils.hpp:268, unhandled system error"
)
MODELS = json.dumps({"object": "list", "data": [{"id": "coder"}]})
ANSWER = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"}}]})


class FakeImage:
    def __init__(self, attrs):
        self.attrs = attrs
        self.id = attrs["Id"]


class FakeContainer:
    def __init__(self, log_lines):
        self.id = "c0ffee"
        self.name = "coder"
        self.status = "running"
        self.streamed = False
        self.ready_to_answer = False
        self.text = "\n".join(log_lines) + "\n"
        self.attrs = {
            "Image": IMAGE_085["Id"],
            "RestartCount": 0,
            "State": {"Running": True, "ExitCode": 0, "StartedAt": "2026-12-02T20:00:00Z"},
            "HostConfig": {"RestartPolicy": {"Name": "always"}},
        }

    def reload(self):
        pass

    def logs(self, stream=False, **kwargs):
        data = self.text.encode()
        if not stream:
            return data

        def chunks():
            yield data
            # Runs once the reader asks for more, so the log is queued before /health answers.
            self.streamed = True

        return chunks()

    def __getattr__(self, name):
        raise AssertionError(f"the module changed the running container ({name})")


class Client:
    def __init__(self, container):
        outer = self
        self.container = container

        class Images:
            def get(self, ref):
                return FakeImage(IMAGE_085)

            def pull(self, *args, **kwargs):
                raise AssertionError("pulled an image")

        class Containers:
            def list(self, all=False, filters=None):
                wanted = (filters or {}).get("name")
                return [outer.container] if wanted == "^/coder$" else []

            def create(self, **kwargs):
                raise AssertionError("created a container")

        self.images = Images()
        self.containers = Containers()

    def ping(self):
        return True


def probe_answers(container, chat=ANSWER):
    def probe(self, path, body=None, timeout=3):
        if not container.ready_to_answer:
            # Not up before the whole log was queued and one more poll read it: the wait must
            # judge every line first.
            container.ready_to_answer = container.streamed
            return None, ""
        answers = {
            "/health": (200, ""),
            "/v1/models": (200, MODELS),
            "/metrics": (200, METRICS),
            "/v1/chat/completions": (200, chat),
        }
        return answers[path]

    return probe


@pytest.fixture
def running(monkeypatch):
    def start(log_lines, chat=ANSWER):
        container = FakeContainer(log_lines)
        client = Client(container)
        monkeypatch.setattr(vllm_docker.docker, "from_env", lambda: client)
        monkeypatch.setattr(
            vllm_container_run.VllmContainerRun,
            "compare",
            lambda self, container, plan: (True, {"before": {}, "after": {}, "changed": []}),
        )
        monkeypatch.setattr(
            vllm_container_run.VllmContainerRun, "_probe", probe_answers(container, chat)
        )
        return client

    return start


def run_module(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        vllm_container.main()
    return json.loads(capsys.readouterr().out)


def quoted(message):
    line = SERVING[1].replace("user\\nping", "user\\n" + message)
    assert message in line
    return line


def test_a_prompt_quoting_an_nccl_error_does_not_fail_a_running_server(running, capsys):
    running([*SEED, "INFO:     Application startup complete.", quoted(NCCL), *SERVING[2:4]])
    result = run_module(capsys, **dict(BASE, expect={"min_kv_cache_gib": 4.0}, smoke_test=True))

    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False
    assert result["memory"]["kv_cache_gib"] == 4.30
    assert result["budget"]["violations"] == []
    assert result["smoke_test"]["passed"] is True


def test_an_engine_error_after_the_ready_line_is_left_to_the_probes(running, capsys):
    engine_line = f"(VllmWorkerProcess pid=193) ERROR 06-03 20:14:02 [worker.py:1] {NCCL}"
    running([*SEED, "INFO:     Application startup complete.", engine_line])
    result = run_module(capsys, **BASE)

    assert not result.get("failed"), result["msg"]
    assert result["memory"]["kv_cache_gib"] == 4.30


def test_a_floor_the_log_cannot_prove_is_unchecked_on_a_running_server(running, capsys):
    # V1 0.8.5-style startup: KV tokens, no KV GiB (the real 0.10.1.1 log without that line).
    log = [
        line
        for line in (LOGS / "v1_0.10.1.1_tp1_enginecore_0_success.log").read_text().splitlines()
        if "Available KV cache memory" not in line
    ]
    running(log)
    result = run_module(
        capsys, **dict(BASE, expect={"min_kv_cache_gib": 4.0}, unverifiable_floor="fail")
    )

    assert not result.get("failed"), result["msg"]
    (unchecked,) = result["budget"]["unchecked"]
    assert unchecked["expect"] == "min_kv_cache_gib"
    assert "93872 KV tokens but no GiB" in unchecked["reason"]
    assert result["budget"]["violations"] == []


def test_a_degenerate_answer_fails_the_smoke_request(running, capsys):
    degenerate = json.dumps(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "!!!!!!!!"}}]}
    )
    running([*SEED, "INFO:     Application startup complete."], chat=degenerate)
    result = run_module(capsys, **dict(BASE, smoke_test=True))

    assert result["failed"] is True
    assert result["kind"] == "smoke_test_failed"
    assert "degenerate text '!!!!!!!!'" in result["msg"]
    assert result["smoke_test"]["error"].startswith("HTTP 200 with degenerate text")
