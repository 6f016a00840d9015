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
from seed_deployment import SEED_ENGINE, SEED_HOST, SEED_OTHER_FLAGS

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
PAGES = FIXTURES / "vllm_metrics"
BUSY_PAGE = (PAGES / "vllm-0.32.0-cpu_12-running.txt").read_text()
IDLE_PAGE = (PAGES / "vllm-0.32.0-cpu_idle.txt").read_text()
NO_SAMPLES_PAGE = (PAGES / "functionary-263_no-samples.txt").read_text()
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
    **SEED_ENGINE,
    **SEED_OTHER_FLAGS,
    **SEED_HOST,
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
        # /metrics pages it answers, one per read, the last one again once they run out.
        self.pages = [METRICS]
        self.metrics_reads = []

    def metrics(self, host, port):
        self.metrics_reads.append((host, port))
        return self.pages.pop(0) if len(self.pages) > 1 else self.pages[0]

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
    def probe(path, body=None, timeout=3, host=None, port=None):
        container = client.containers.get(name)
        if container is None or container.behaviour not in ("serves", "busy"):
            return None, ""
        if not container.attrs["State"]["Running"]:
            return None, ""
        if path == "/metrics":
            page = container.metrics(host, port)
            return (200, page) if page is not None else (None, "")
        return {"/health": (200, ""), "/v1/models": (200, MODELS)}[path]

    return probe


def make_run(client, check_mode=False, clock=None, host=None, **changes):
    clock = clock or Clock()
    host = host or {}
    return VllmContainerRun(
        params(**changes),
        check_mode,
        client,
        probe=probe_for(client),
        clock=clock,
        sleep=clock.sleep,
        **host,
    )


class NvidiaSmi:
    """``nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits``.

    Answers one listing per call, the last one again once they run out; each call is recorded
    in the client's calls, so its order against the Docker calls shows.
    """

    def __init__(self, client, *listings):
        self.client = client
        self.listings = list(listings)

    def run_command(self, argv):
        self.client.calls.append(("nvidia-smi", argv[1]))
        listing = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        return 0, listing, ""

    def host(self):
        return {"run_command": self.run_command, "get_bin_path": lambda name: "/usr/bin/" + name}


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


def test_the_failed_containers_gpu_memory_is_released_before_the_previous_one_starts():
    client = FakeClient()
    client.add(CONTAINER)
    client.next = {"log": SEED_LOG.split("Uvicorn")[0], "behaviour": "silent", "pids": (4242,)}
    # The failed engine's context is still listed once after it was removed, then gone.
    smi = NvidiaSmi(client, "4242, 20312\n", "")
    run = make_run(client, host=smi.host(), max_model_len=16384)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    calls = client.calls
    removed = calls.index(("remove", "vt-coder"))
    started = calls.index(("start", "vt-coder"), removed)
    queries = [i for i, call in enumerate(calls) if call[0] == "nvidia-smi"]
    assert len(queries) == 2
    assert removed < queries[0]
    assert queries[-1] < started
    report = failure.value.details["gpu_release"]
    assert report["pids"] == [4242]
    assert report["released"] is True
    assert report["polls"] == 2
    assert report["container"] == "vt-coder"
    assert run.result["gpu_release"] == report
    assert failure.value.details["rollback"]["ready"] is True


def test_a_bound_that_passes_still_restores_the_previous_container():
    client = FakeClient()
    client.add(CONTAINER)
    client.next = {"log": "", "behaviour": "silent", "pids": (4242, 4301)}
    smi = NvidiaSmi(client, "4242, 20312\n4301, [N/A]\n")
    run = make_run(client, host=smi.host(), max_model_len=16384, gpu_release_timeout=3)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    report = failure.value.details["gpu_release"]
    assert report["released"] is False
    assert report["remaining"] == [4242, 4301]
    assert report["remaining_mib"] is None  # one of them could not say: not summed as zero
    assert client.calls[-1] == ("start", "vt-coder")


def test_a_host_without_nvidia_smi_restores_at_once_and_says_why():
    client = FakeClient()
    client.add(CONTAINER)
    client.next = {"log": "", "behaviour": "silent", "pids": (4242,)}
    run = make_run(client, max_model_len=16384)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    report = failure.value.details["gpu_release"]
    assert report["released"] is None
    assert report["reason"] == "nvidia-smi was not found on the host"
    assert report["polls"] == 0
    assert failure.value.details["rolled_back"] is True


def test_an_exited_container_leaves_no_process_to_wait_for():
    client = FakeClient()
    client.add(CONTAINER)
    client.next = {"log": KV_TOO_SMALL_LOG, "behaviour": "exits", "pids": (4242,)}
    smi = NvidiaSmi(client, "")
    run = make_run(client, host=smi.host(), max_model_len=16384)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    report = failure.value.details["gpu_release"]
    assert report["reason"] == "the failed container had no process left to wait for"
    assert ("nvidia-smi", "--query-compute-apps=pid,used_memory") not in client.calls


def test_state_rolled_back_waits_for_the_current_containers_gpu_memory():
    client = FakeClient()
    current = client.add(dict(copy.deepcopy(CONTAINER), Id="failed"), behaviour="silent")
    current.pids = [5151]
    client.add(dict(copy.deepcopy(CONTAINER), Name="/vt-coder-llmops-previous"))
    client.containers["vt-coder-llmops-previous"].attrs["State"]["Running"] = False
    smi = NvidiaSmi(client, "5151, 100\n", "")
    run = make_run(client, host=smi.host(), state="rolled_back")
    run.run()
    assert run.result["gpu_release"]["released"] is True
    assert [call[0] for call in client.calls] == [
        "remove",
        "nvidia-smi",
        "nvidia-smi",
        "rename",
        "restart_policy",
        "start",
    ]


def changed_run(client, **changes):
    """A changed configuration (max_model_len) for the captured running container."""
    return make_run(client, max_model_len=16384, **changes)


def test_the_old_container_drains_before_it_stops():
    client = FakeClient()
    old = client.add(CONTAINER)
    old.pages = [BUSY_PAGE, BUSY_PAGE, IDLE_PAGE]
    run = changed_run(client)
    run.run()
    drain = run.result["drain"]
    assert (drain["drained"], drain["requests_running"], drain["polls"]) == (True, 0, 3)
    assert drain["seconds"] == 2.0  # two 1 s sleeps of the fake clock between the reads
    # Read where the old container publishes (127.0.0.1:18124 in its inspect output).
    assert old.metrics_reads[:3] == [("127.0.0.1", 18124)] * 3
    assert client.calls[:2] == [("restart_policy", "vt-coder", "no"), ("stop", "vt-coder", 30)]
    assert (drain["shutdown_timeout"], drain["stop_timeout"]) == (None, 30)


def test_a_drain_that_reaches_its_bound_still_stops_the_old_container():
    client = FakeClient()
    client.add(CONTAINER).pages = [BUSY_PAGE]
    run = changed_run(client, drain_timeout=3)
    run.run()
    drain = run.result["drain"]
    assert (drain["drained"], drain["requests_running"]) == (False, 12)
    assert drain["reason"] == "the bound passed with requests still running"
    assert drain["polls"] == 4
    assert ("stop", "vt-coder", 30) in client.calls


def test_a_page_without_the_figure_or_no_answer_does_not_end_the_drain():
    client = FakeClient()
    client.add(CONTAINER).pages = [NO_SAMPLES_PAGE, None, IDLE_PAGE]
    run = changed_run(client)
    run.run()
    drain = run.result["drain"]
    assert (drain["drained"], drain["polls"]) == (True, 3)
    assert drain["last_error"] == "GET http://127.0.0.1:18124/metrics: no answer"


def test_a_page_that_never_has_the_figure_is_not_called_drained():
    client = FakeClient()
    client.add(CONTAINER).pages = [NO_SAMPLES_PAGE]
    run = changed_run(client, drain_timeout=2)
    run.run()
    drain = run.result["drain"]
    assert drain["drained"] is None
    assert drain["last_error"] == "/metrics has no vllm:num_requests_running"
    assert drain["reason"] == "/metrics gave no running-request count within the bound"


def test_drain_timeout_0_stops_at_once():
    client = FakeClient()
    old = client.add(CONTAINER)
    run = changed_run(client, drain_timeout=0)
    run.run()
    assert old.metrics_reads == []
    assert run.result["drain"]["reason"] == "the drain is off (drain_timeout 0)"


def test_the_stop_timeout_exceeds_the_old_servers_shutdown_timeout():
    client = FakeClient()
    old = client.add(CONTAINER)
    old.attrs["Config"]["Cmd"] = [*old.attrs["Config"]["Cmd"], "--shutdown-timeout", "120"]
    run = changed_run(client)
    run.run()
    assert run.result["drain"]["shutdown_timeout"] == 120
    assert ("stop", "vt-coder", 135) in client.calls


@pytest.mark.parametrize(
    ("command", "seconds"),
    [
        (["--model", "/m"], None),
        (["--shutdown-timeout", "30"], 30),
        (["--shutdown-timeout=45"], 45),
        (["--shutdown-timeout", "soon"], None),
        (["--shutdown-timeout"], None),
        (None, None),
    ],
)
def test_shutdown_timeout_of_a_command_line(command, seconds):
    assert vllm_container_run.shutdown_timeout_of(command) == seconds


@pytest.mark.parametrize(
    ("stop", "shutdown", "expected"),
    [(30, None, 30), (30, 0, 30), (30, 10, 30), (30, 120, 135), (200, 120, 200)],
)
def test_stop_timeout_for(stop, shutdown, expected):
    assert vllm_container_run.stop_timeout_for(stop, shutdown) == expected


def test_a_missing_image_is_pulled_and_check_mode_only_says_it_would():
    client = FakeClient()
    client.image = lambda ref: None
    run = make_run(client, check_mode=True, pull="missing")
    run.run()
    assert client.calls == []
    assert run.result["image_pull"] == "would pull"
    run = make_run(client, pull="missing")
    run.run()
    assert client.calls[0] == ("pull", "llmops-test/vllm-openai:v0.8.5")
    assert run.result["image_pull"] == "pulled"


def test_pull_never_refuses_a_missing_image_before_any_change():
    client = FakeClient()
    client.image = lambda ref: None
    with pytest.raises(ModuleFailure, match="is not on the host and pull is never"):
        make_run(client).run()
    assert client.calls == []


def test_rollback_off_keeps_the_failed_container_stopped_and_removes_the_previous():
    client = FakeClient()
    client.add(CONTAINER)
    client.next = {"log": "", "behaviour": "silent", "pids": (4242,)}
    run = make_run(client, max_model_len=16384, rollback=False)
    with pytest.raises(ModuleFailure) as failure:
        run.run()
    assert failure.value.msg.endswith("rollback is off: the failed container is kept, stopped")
    assert list(client.containers) == ["vt-coder"]
    assert client.containers["vt-coder"].id != CONTAINER["Id"]
    assert client.calls[-2:] == [("stop", "vt-coder", 30), ("remove", "vt-coder-llmops-previous")]
    assert "gpu_release" not in run.result


def test_a_cluster_follower_is_ready_once_its_log_proves_the_join():
    client = FakeClient()
    client.next = {
        "log": (LOGS / "real_cpu_0.32.0_nnodes2_follower.log").read_text(),
        "behaviour": "silent",  # a follower serves no HTTP
        "pids": (),
    }
    cluster = {"role": "follower", "nnodes": 2, "node_rank": 1, "master_addr": "mn18-head"}
    run = make_run(
        client,
        vllm_version="0.32.0",
        tensor_parallel_size=2,
        swap_space=None,
        tokenizer_pool_size=None,
        port=0,
        cluster=cluster,
    )
    run.run()
    assert run.result["cluster"]["join"]["joined"] is True
    assert "rank 1 in world size 2 is assigned as" in run.result["cluster"]["join"]["proof"][0]
    assert client.changes() == ["create", "start", "restart_policy"]
