"""module_utils/vllm_docker.py: the SDK calls it makes and the errors it turns into DockerError.

The SDK objects are fakes that record their calls; the error classes and DeviceRequest/Ulimit
are the real Docker SDK's. ``docker top`` output is the shape the Engine API documents for
GET /containers/{id}/top (``Titles`` and ``Processes``, docs.docker.com/reference/api/engine).
"""

from __future__ import annotations

import pytest
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import DeviceRequest, Ulimit

from ansible_collections.llmops.gpu_serving.plugins.module_utils import vllm_docker
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_docker import (
    ContainerGone,
    DockerClient,
    DockerError,
    StartRefused,
)


class SdkContainer:
    def __init__(self, fail=None):
        self.id = "c0ffee"
        self.name = "coder"
        self.status = "running"
        self.attrs = {"Id": "c0ffee"}
        self.calls = []
        self.fail = fail or {}

    def _call(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))
        if name in self.fail:
            raise self.fail[name]

    def reload(self):
        self._call("reload")

    def start(self):
        self._call("start")

    def stop(self, timeout):
        self._call("stop", timeout=timeout)

    def remove(self, force):
        self._call("remove", force=force)

    def rename(self, name):
        self._call("rename", name)

    def update(self, **kwargs):
        self._call("update", **kwargs)

    def logs(self, **kwargs):
        self._call("logs", **kwargs)
        return b"INFO: ready \xff\n"

    def top(self):
        self._call("top")
        return {
            "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
            "Processes": [
                ["root", "4242", "4220", "0", "10:00", "?", "00:00:09", "python3 -m vllm"],
                ["root", "4301", "4242", "0", "10:00", "?", "00:00:02", "VllmWorkerProcess"],
            ],
        }


class SdkImage:
    def __init__(self):
        self.id = "sha256:abc"
        self.attrs = {"Id": "sha256:abc", "Config": {}}


class SdkClient:
    def __init__(self, container):
        outer = self
        self.created = None
        self.pulled = None

        class Containers:
            def list(self, all=False, filters=None):
                return [container] if filters == {"name": "^/coder$"} else []

            def create(self, **kwargs):
                outer.created = kwargs
                return container

            def run(self, image, **kwargs):
                raise APIError("executable file not found: python3")

        class Images:
            def get(self, ref):
                if ref == "present:1":
                    return SdkImage()
                raise ImageNotFound(f"No such image: {ref}")

            def pull(self, repository, tag):
                outer.pulled = (repository, tag)
                return SdkImage()

        self.containers = Containers()
        self.images = Images()


def test_find_by_exact_name_and_the_calls_on_a_container():
    sdk = SdkContainer()
    client = DockerClient(SdkClient(sdk))
    assert client.find("other") is None
    container = client.find("coder")
    assert (container.id, container.name, container.status) == ("c0ffee", "coder", "running")
    container.stop(30)
    container.rename("coder-llmops-previous")
    container.set_restart_policy("no")
    container.remove()
    assert container.logs(since=5) == "INFO: ready \ufffd\n"
    assert [call[0] for call in sdk.calls] == ["stop", "rename", "update", "remove", "logs"]
    assert sdk.calls[2][2] == {"restart_policy": {"Name": "no", "MaximumRetryCount": 0}}
    assert sdk.calls[3][2] == {"force": True}
    assert sdk.calls[4][2] == {"stdout": True, "stderr": True, "since": 5}


def test_top_pids_reads_the_pid_column():
    container = DockerClient(SdkClient(SdkContainer())).find("coder")
    assert container.top_pids() == [4242, 4301]


def test_sdk_errors_become_docker_errors_with_their_text():
    sdk = SdkContainer(
        fail={
            "start": APIError("500 Server Error", explanation="OCI runtime create failed"),
            "stop": APIError("409 Conflict"),
            "reload": NotFound("No such container: c0ffee"),
            "remove": NotFound("No such container: c0ffee"),
        }
    )
    container = DockerClient(SdkClient(sdk)).find("coder")
    with pytest.raises(StartRefused, match=r"^OCI runtime create failed$"):
        container.start()
    with pytest.raises(DockerError, match="409 Conflict"):
        container.stop(10)
    with pytest.raises(ContainerGone):
        container.reload()
    container.remove()  # a container already gone is not an error


def test_images_missing_pulled_and_unreadable():
    client = DockerClient(SdkClient(SdkContainer()))
    assert client.image("absent:1") is None
    assert client.image("present:1").id == "sha256:abc"
    assert client.image_attrs("absent:1") == {}
    assert client.pull("vllm/vllm-openai:v0.8.5").id == "sha256:abc"
    assert client._client.pulled == ("vllm/vllm-openai", "v0.8.5")
    client.pull("registry.local:5000/vllm")
    assert client._client.pulled == ("registry.local:5000/vllm", "latest")
    with pytest.raises(DockerError, match="python3"):
        client.run_output("sha256:abc", ["python3"], {})


@pytest.mark.parametrize(
    ("gpus", "request_"),
    [
        ({"count": -1}, DeviceRequest(count=-1, capabilities=[["gpu"]])),
        ({"device_ids": ["0", "1"]}, DeviceRequest(device_ids=["0", "1"], capabilities=[["gpu"]])),
    ],
)
def test_create_turns_gpus_and_ulimits_into_sdk_types(gpus, request_):
    sdk = SdkClient(SdkContainer())
    DockerClient(sdk).create(
        {"name": "coder", "image": "i", "gpus": gpus, "ulimits": {"memlock": (-1, -1)}}
    )
    assert sdk.created["device_requests"] == [request_]
    assert sdk.created["ulimits"] == [Ulimit(name="memlock", soft=-1, hard=-1)]
    assert "gpus" not in sdk.created


def test_connect_reports_an_unreachable_engine(monkeypatch):
    def refuse(**kwargs):
        raise vllm_docker.DockerException("Error while fetching server API version")

    monkeypatch.setattr(vllm_docker.docker, "DockerClient", refuse)
    with pytest.raises(DockerError, match="fetching server API version"):
        vllm_docker.connect("tcp://127.0.0.1:1")
