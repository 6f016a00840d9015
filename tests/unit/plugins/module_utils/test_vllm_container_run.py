"""vllm_container's state machine (module_utils/vllm_container_run.py) without Docker.

A fake client with vllm_docker.DockerClient's methods records every call that changes
something (create, start, stop, remove, rename, restart policy, pull); the API probe answers
for whichever fake container holds the name and serves. Inputs are real captures: the
container the module created from the seed's flags and its image (tests/fixtures/
docker_inspect), vLLM logs (tests/fixtures/vllm_logs), the stand-in's /metrics page. The
options are the module's own argument spec with its defaults, validated as Ansible does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from unittest import mock

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.llmops.gpu_serving.plugins.module_utils import vllm_container_run
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container_run import (
    ModuleFailure,
    VllmContainerRun,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_docker import (
    DockerError,
    Image,
    StartRefused,
)
from ansible_collections.llmops.gpu_serving.plugins.modules import vllm_container

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
CONTAINER = json.loads(
    (FIXTURES / "docker_inspect" / "container_standin_seed_flags.json").read_text()
)
IMAGE = json.loads((FIXTURES / "docker_inspect" / "image_standin_v0.8.5.json").read_text())
METRICS = (FIXTURES / "docker_inspect" / "metrics_standin_v0.8.5.txt").read_text()
LOGS = FIXTURES / "vllm_logs"
SEED_LOG = (LOGS / "v0_0.8.5_tp4_seed_success.log").read_text()
KV_TOO_SMALL_LOG = (LOGS / "fail_kv_cache_too_small_v1_enginecore_dp0.log").read_text()
MODELS = json.dumps({"object": "list", "data": [{"id": "coder"}]})

# The options that created the captured container (its Cmd is the seed's flags for 0.8.5).
OPTIONS = {
    "name": "vt-coder",
    "image": "llmops-test/vllm-openai:v0.8.5",
    "pull": "never",
    "gpus": "",
    "model_host_path": "/tmp/m1",
    "model_container_path": "/qwen/qwen3-30b-a3b",
    "served_model_name": ["coder"],
    "port": 18124,
    "cpuset_cpus": "0-1",
    "ulimits": {"memlock": 8388608, "stack": 67108864},
    "ipc_mode": "host",
    "env": {"STANDIN_SPEED": "20"},
    "tensor_parallel_size": 4,
    "dtype": "half",
    "max_model_len": 32768,
    "max_num_batched_tokens": 4096,
    "gpu_memory_utilization": 0.93,
    "block_size": 32,
    "enable_chunked_prefill": True,
    "swap_space": 16,
    "tokenizer_pool_size": 56,
    "disable_custom_all_reduce": True,
    "host_cuda_version": "12.4",
    "host_driver_version": "550.144.03",
    "host_gpu_count": 4,
    "ready_timeout": 30,
}


class _Captured(Exception):
    pass


def _argument_spec() -> dict:
    """The module's argument spec, taken from its main() as AnsibleModule receives it."""
    captured = {}

    def capture(argument_spec, **kwargs):
        captured.update(argument_spec)
        raise _Captured

    with mock.patch.object(vllm_container, "AnsibleModule", capture), pytest.raises(_Captured):
        vllm_container.main()
    return captured


SPEC = _argument_spec()


def params(**changes) -> dict:
    result = ArgumentSpecValidator(SPEC).validate(dict(OPTIONS, **changes))
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeContainer:
    """A container handle; ``behaviour``: serves, silent (runs, never answers), exits (1)."""

    def __init__(self, client, attrs, log, behaviour="serves", pids=()):
        self.client = client
        self.attrs = attrs
        self.log = log
        self.behaviour = behaviour
        self.pids = list(pids)
        self.id = attrs["Id"]
        self.name = attrs["Name"].lstrip("/")

    @property
    def status(self) -> str:
        return "running" if self.attrs["State"]["Running"] else "exited"

    def _record(self, *call):
        self.client.calls.append(call)

    def reload(self):
        pass

    def start(self):
        self._record("start", self.name)
        if self.behaviour == "refused":
            raise StartRefused("could not select device driver with capabilities: [[gpu]]")
        state = self.attrs["State"]
        self.client.starts += 1
        state["StartedAt"] = f"2026-12-03T10:00:{self.client.starts:02d}Z"
        state["Running"] = self.behaviour != "exits"
        state["ExitCode"] = 1 if self.behaviour == "exits" else 0

    def stop(self, timeout):
        self._record("stop", self.name, timeout)
        self.attrs["State"]["Running"] = False

    def remove(self):
        self._record("remove", self.name)
        self.client.containers.pop(self.name, None)

    def rename(self, name):
        self._record("rename", self.name, name)
        self.client.containers[name] = self.client.containers.pop(self.name)
        self.name = name

    def set_restart_policy(self, name, maximum_retry_count=0):
        self._record("restart_policy", self.name, name)
        self.attrs["HostConfig"]["RestartPolicy"] = {
            "Name": name,
            "MaximumRetryCount": maximum_retry_count,
        }

    def logs(self, since=None):
        return self.log

    def follow_logs(self, since):
        return iter([self.log.encode()])

    def top_pids(self):
        if not self.attrs["State"]["Running"]:
            raise DockerError(f"Container {self.id} is not running")
        return list(self.pids)


class FakeClient:
    def __init__(self):
        self.containers: dict[str, FakeContainer] = {}
        self.calls: list[tuple] = []
        self.starts = 0
        self.next = {"log": SEED_LOG, "behaviour": "serves", "pids": ()}

    def add(self, attrs, log=SEED_LOG, behaviour="serves", pids=()):
        container = FakeContainer(self, copy.deepcopy(attrs), log, behaviour, pids)
        self.containers[container.name] = container
        return container

    def find(self, name):
        return self.containers.get(name)

    def image(self, ref):
        return Image(IMAGE["Id"], IMAGE)

    def image_attrs(self, image_id):
        return IMAGE if image_id == IMAGE["Id"] else {}

    def pull(self, ref):
        self.calls.append(("pull", ref))
        return Image(IMAGE["Id"], IMAGE)

    def run_output(self, image_id, entrypoint, environment):
        raise DockerError("no throwaway containers here")

    def create(self, kwargs):
        self.calls.append(("create", kwargs["name"]))
        self.created = kwargs
        policy = kwargs.get("restart_policy") or {"Name": "no", "MaximumRetryCount": 0}
        attrs = {
            "Id": f"new{len(self.calls)}",
            "Name": "/" + kwargs["name"],
            "Image": IMAGE["Id"],
            "RestartCount": 0,
            "State": {"Running": False, "ExitCode": 0, "StartedAt": "0001-01-01T00:00:00Z"},
            "HostConfig": {"RestartPolicy": policy},
            "Config": {"Cmd": kwargs["command"]},
        }
        return self.add(attrs, **self.next)

    def changes(self):
        return [call[0] for call in self.calls]


def probe_for(client, name="vt-coder"):
    def probe(path, body=None, timeout=3):
        container = client.containers.get(name)
        if container is None or container.behaviour != "serves":
            return None, ""
        if not container.attrs["State"]["Running"]:
            return None, ""
        answers = {"/health": (200, ""), "/v1/models": (200, MODELS), "/metrics": (200, METRICS)}
        return answers[path]

    return probe


def make_run(client, check_mode=False, clock=None, **changes):
    clock = clock or Clock()
    return VllmContainerRun(
        params(**changes),
        check_mode,
        client,
        probe=probe_for(client),
        clock=clock,
        sleep=clock.sleep,
    )


def test_the_options_build_the_captured_container():
    # The other tests lean on it: the captured container is what these options plan.
    client = FakeClient()
    run = make_run(client)
    plan = run.plan()
    match, diff = run.compare(client.add(CONTAINER), plan)
    assert match, diff


def test_a_missing_container_is_created_started_and_verified():
    client = FakeClient()
    run = make_run(client)
    run.run()
    assert client.changes() == ["create", "start", "restart_policy"]
    # Created without a restart policy; "always" only once it serves.
    assert "restart_policy" not in client.created
    assert client.calls[-1] == ("restart_policy", "vt-coder", "always")
    # gpus "" requests no GPU: nothing for the client to turn into a DeviceRequest.
    assert "gpus" not in client.created
    assert client.created["ulimits"] == {
        "memlock": (8388608, 8388608),
        "stack": (67108864, 67108864),
    }
    result = run.result
    assert result["changed"] is True
    assert result["rolled_back"] is False
    assert result["container"]["name"] == "vt-coder"
    assert result["memory"]["gpu_blocks"] == 5867
    assert result["diff"]["before"] == {}


def test_an_unchanged_running_container_gets_no_call_that_changes_it():
    client = FakeClient()
    client.add(CONTAINER)
    run = make_run(client)
    run.run()
    assert client.calls == []
    assert run.result["changed"] is False
    assert run.result["memory"]["gpu_blocks"] == 5867


def test_check_mode_changes_nothing_on_a_changed_configuration():
    client = FakeClient()
    client.add(CONTAINER)
    run = make_run(client, check_mode=True, max_model_len=16384)
    run.run()
    assert client.calls == []
    assert run.result["changed"] is True
    assert run.result["changes"] == ["command"]
    assert "--max-model-len" in run.result["diff"]["after"]["command"]


def test_ready_timeout_rolls_back_to_the_parked_previous_container():
    client = FakeClient()
    client.add(CONTAINER)
    client.next = {"log": SEED_LOG.split("Uvicorn")[0], "behaviour": "silent", "pids": (4242,)}
    run = make_run(client, max_model_len=16384)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    assert failure.value.details["kind"] == "ready_timeout"
    assert "was not ready within 30 s" in failure.value.msg
    assert failure.value.msg.endswith("rolled back to the previous container vt-coder")
    # Parked (no restart policy, stopped, renamed), then the new one, then the restore.
    assert client.calls[:4] == [
        ("restart_policy", "vt-coder", "no"),
        ("stop", "vt-coder", 30),
        ("rename", "vt-coder", "vt-coder-llmops-previous"),
        ("create", "vt-coder"),
    ]
    assert client.calls[-4:] == [
        ("remove", "vt-coder"),
        ("rename", "vt-coder-llmops-previous", "vt-coder"),
        ("restart_policy", "vt-coder", "always"),
        ("start", "vt-coder"),
    ]
    assert list(client.containers) == ["vt-coder"]
    restored = client.containers["vt-coder"]
    assert restored.id == CONTAINER["Id"]
    assert run.result["rolled_back"] is True
    assert failure.value.details["rollback"]["ready"] is True


def test_a_fatal_log_line_is_classified_and_the_previous_container_restored():
    client = FakeClient()
    client.add(CONTAINER)
    client.next = {"log": KV_TOO_SMALL_LOG, "behaviour": "exits", "pids": ()}
    run = make_run(client, max_model_len=16384)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    details = failure.value.details
    assert details["kind"] == "kv_cache_too_small"
    assert details["reason"] == "exited"
    assert any("KV cache" in line or "max seq len" in line for line in details["proof"])
    assert details["rolled_back"] is True
    assert client.containers["vt-coder"].id == CONTAINER["Id"]


def test_a_first_deploy_that_fails_leaves_nothing():
    client = FakeClient()
    client.next = {"log": KV_TOO_SMALL_LOG, "behaviour": "exits", "pids": ()}
    run = make_run(client)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    assert failure.value.msg.endswith("the new container was removed (no previous one to restore)")
    assert client.containers == {}


def test_a_start_the_engine_refuses_is_classified_from_its_explanation():
    client = FakeClient()
    client.next = {"log": "", "behaviour": "refused", "pids": ()}
    run = make_run(client)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    assert failure.value.msg.startswith("Docker could not start vt-coder: could not select")
    assert failure.value.details["proof"] == [
        "could not select device driver with capabilities: [[gpu]]"
    ]


def test_absent_removes_the_container_and_a_parked_previous_one():
    client = FakeClient()
    client.add(CONTAINER)
    client.add(dict(CONTAINER, Id="parked", Name="/vt-coder-llmops-previous"))
    run = make_run(client, state="absent")
    run.run()
    assert sorted(client.calls) == [("remove", "vt-coder"), ("remove", "vt-coder-llmops-previous")]
    assert run.result["changed"] is True
    assert client.containers == {}
    again = make_run(client, state="absent")
    again.run()
    assert again.result["changed"] is False


def test_absent_in_check_mode_removes_nothing():
    client = FakeClient()
    client.add(CONTAINER)
    run = make_run(client, check_mode=True, state="absent")
    run.run()
    assert client.calls == []
    assert run.result["changed"] is True
    assert run.result["diff"]["before"] == {"containers": ["vt-coder"]}


def test_previous_keep_parks_it_and_committed_removes_it():
    client = FakeClient()
    client.add(CONTAINER)
    run = make_run(client, max_model_len=16384, previous="keep")
    run.run()
    assert run.result["previous_kept"] == CONTAINER["Id"]
    assert set(client.containers) == {"vt-coder", "vt-coder-llmops-previous"}
    client.calls.clear()
    commit = make_run(client, state="committed")
    commit.run()
    assert client.calls == [("remove", "vt-coder-llmops-previous")]


def test_rolled_back_restores_the_parked_container_and_waits_for_it():
    client = FakeClient()
    client.add(dict(copy.deepcopy(CONTAINER), Name="/vt-coder-llmops-previous"))
    client.containers["vt-coder-llmops-previous"].attrs["State"]["Running"] = False
    client.next = {"log": SEED_LOG, "behaviour": "serves", "pids": ()}
    run = make_run(client, state="rolled_back")
    run.run()
    assert client.changes() == ["rename", "restart_policy", "start"]
    assert run.result["rolled_back"] is True
    assert run.result["container"]["id"] == CONTAINER["Id"]


def test_present_creates_without_starting_and_stopped_stops():
    client = FakeClient()
    run = make_run(client, state="present")
    run.run()
    assert client.changes() == ["create"]
    assert client.created["restart_policy"] == {"Name": "always", "MaximumRetryCount": 0}
    # The captured container matches the options: stopped only stops it.
    client = FakeClient()
    client.add(CONTAINER)
    stop = make_run(client, state="stopped")
    stop.run()
    assert client.calls == [("stop", "vt-coder", 30)]


def test_epoch_seconds_of_docker_stamps():
    assert vllm_container_run._epoch_seconds("2026-11-25T04:39:33.454261614Z") == 1795581573
    assert vllm_container_run._epoch_seconds("0001-01-01T00:00:00Z") is None
