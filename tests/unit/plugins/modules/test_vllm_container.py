"""vllm_container's main(): what it refuses before it changes anything in Docker.

A fake Docker SDK client answers image look-ups from real ``docker image inspect`` output of the
stand-in images (tests/fixtures/docker_inspect) and fails the test on any call that would
change something. The whole module against a real engine is tests/integration.
"""

import copy
import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.gpu_serving.plugins.module_utils import (
    vllm_container_run,
    vllm_docker,
)
from ansible_collections.llmops.gpu_serving.plugins.modules import vllm_container

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "docker_inspect"
IMAGE_085 = json.loads((FIXTURES / "image_standin_v0.8.5.json").read_text())
REQUIRE_12_8 = (
    (Path(__file__).resolve().parents[3] / "harness" / "standin-vllm" / "require-cuda-12.8.txt")
    .read_text()
    .strip()
)


def image_090() -> dict:
    """The v0.8.5 stand-in's inspect with the v0.9.0 variant's CUDA floor."""
    attrs = copy.deepcopy(IMAGE_085)
    attrs["Config"]["Env"] = [
        f"NVIDIA_REQUIRE_CUDA={REQUIRE_12_8}" if entry.startswith("NVIDIA_REQUIRE_CUDA=") else entry
        for entry in attrs["Config"]["Env"]
    ]
    attrs["Config"]["Labels"].pop("org.opencontainers.image.version")
    return attrs


class FakeImage:
    def __init__(self, attrs):
        self.attrs = attrs
        self.id = attrs["Id"]


class FakeClient:
    """Reads succeed; anything that would change the host fails the test."""

    def __init__(self, images):
        self._images = images
        self.runs = []
        self.package_output = None
        outer = self

        class Images:
            def get(self, ref):
                if ref in outer._images:
                    return FakeImage(outer._images[ref])
                raise vllm_docker.ImageNotFound(ref)

            def pull(self, *args, **kwargs):
                raise AssertionError("pulled an image")

        class Containers:
            def list(self, **kwargs):
                return []

            def create(self, **kwargs):
                raise AssertionError("created a container")

            def run(self, image, **kwargs):
                # The throwaway container that reads the vLLM package version of an image.
                outer.runs.append((image, kwargs))
                if outer.package_output is None:
                    raise vllm_docker.APIError("executable file not found: python3")
                return outer.package_output

        self.images = Images()
        self.containers = Containers()

    def ping(self):
        return True


BASE = {
    "name": "coder",
    "image": "llmops-test/vllm-openai:v0.8.5",
    "pull": "never",
    "gpus": "all",
    "model_host_path": "/home/llm/model/qwen/qwen3-30b-a3b",
    "model_container_path": "/qwen/qwen3-30b-a3b",
    "served_model_name": ["coder"],
    "tensor_parallel_size": 4,
    "dtype": "half",
    "max_model_len": 32768,
    "gpu_memory_utilization": 0.93,
    "block_size": 32,
    "swap_space": 16,
    "tokenizer_pool_size": 56,
    "host_cuda_version": "12.4",
    "host_driver_version": "550.144.03",
    "host_gpu_count": 4,
}


@pytest.fixture
def docker_client(monkeypatch):
    images = {
        "llmops-test/vllm-openai:v0.8.5": IMAGE_085,
        "llmops-test/vllm-openai:v0.9.0": image_090(),
    }
    client = FakeClient(images)
    monkeypatch.setattr(vllm_docker.docker, "from_env", lambda: client)
    return client


def warning_texts(result: dict) -> list[str]:
    # ansible-core 2.19 reports warnings as WarningSummary dicts; older versions as strings.
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def run_module(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        vllm_container.main()
    return json.loads(capsys.readouterr().out)


def test_bad_input_fails_before_docker(monkeypatch, capsys):
    def no_docker():
        raise AssertionError("Docker was contacted")

    monkeypatch.setattr(vllm_docker.docker, "from_env", no_docker)
    result = run_module(
        capsys,
        **dict(BASE, gpu_memory_utilization=1.5, ulimits={"memlok": -1}, port=0, bind_address="x"),
    )
    assert result["failed"]
    assert result["kind"] == "bad_argument"
    assert "gpu_memory_utilization must be in (0, 1], got 1.5" in result["msg"]
    assert "ulimits: unknown limit 'memlok'" in result["msg"]
    assert "bind_address must be an IP address" in result["msg"]


def test_cuda_floor_refusal_names_both_versions(docker_client, capsys):
    result = run_module(
        capsys, **dict(BASE, image="llmops-test/vllm-openai:v0.9.0", vllm_version="0.9.0")
    )
    assert result["failed"]
    assert result["kind"] == "cuda_driver"
    assert "needs CUDA 12.8" in result["msg"]
    assert "12.4" in result["msg"]
    assert result["cuda"]["satisfied"] is False


def test_tensor_parallel_larger_than_visible_gpus(docker_client, capsys):
    result = run_module(capsys, **dict(BASE, gpus="device=0,1"))
    assert result["failed"]
    assert "tensor_parallel_size 4 needs 4 GPUs and the container would see 2" in result["msg"]


def test_removed_flag_refused_with_fail(docker_client, capsys):
    result = run_module(capsys, **dict(BASE, vllm_version="0.10.1.1", on_unsupported_flag="fail"))
    assert result["failed"]
    assert result["kind"] == "bad_argument"
    assert "--tokenizer-pool-size was removed in vLLM 0.10.0" in result["msg"]


def test_unknown_version_needs_vllm_version(docker_client, capsys):
    images = docker_client._images
    images["llmops-test/vllm-openai:latest"] = image_090()
    result = run_module(
        capsys, **dict(BASE, image="llmops-test/vllm-openai:latest", host_cuda_version="12.8")
    )
    assert result["failed"]
    assert "set vllm_version" in result["msg"]
    assert any("could not read the vLLM package version" in w for w in warning_texts(result))


@pytest.mark.parametrize(
    "image", ["llmops-test/vllm-openai:latest", "llmops-test/vllm-openai@sha256:" + "ab" * 32]
)
def test_a_version_no_label_or_tag_says_is_read_from_the_package(docker_client, capsys, image):
    docker_client._images[image] = image_090()
    docker_client.package_output = b"0.9.0\n"
    result = run_module(
        capsys, **dict(BASE, image=image, host_cuda_version="12.8", _ansible_check_mode=True)
    )

    assert not result.get("failed"), result["msg"]
    assert result["image"]["vllm_version"] == "0.9.0"
    assert result["image"]["vllm_version_source"] == "vLLM package in the image"
    ((ran, kwargs),) = docker_client.runs
    assert ran == image_090()["Id"]
    assert kwargs["entrypoint"][:2] == ["python3", "-c"]
    assert kwargs["remove"] is True
    assert kwargs["network_disabled"] is True


def test_check_mode_reports_the_container_it_would_create(docker_client, capsys):
    result = run_module(
        capsys,
        **dict(
            BASE,
            vllm_version="0.18.0",
            api_key="s3cret",
            _ansible_check_mode=True,
            _ansible_diff=True,
        ),
    )
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["container"] is None
    assert "--swap-space" not in result["args"]
    assert [item["flag"] for item in result["dropped_flags"]] == [
        "--swap-space",
        "--tokenizer-pool-size",
    ]
    assert result["args"][-2:] == ["--api-key", "********"]
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["gpus"] == {"count": -1}
    assert "s3cret" not in json.dumps(result)
    assert any("dropped --swap-space" in warning for warning in warning_texts(result))


def test_missing_image_with_pull_never(docker_client, capsys):
    result = run_module(capsys, **dict(BASE, image="llmops-test/vllm-openai:v9"))
    assert result["failed"]
    assert "is not on the host and pull is never" in result["msg"]


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        # State.StartedAt of the captured container (tests/fixtures/docker_inspect).
        (
            json.loads((FIXTURES / "container_standin_seed_flags.json").read_text())["State"][
                "StartedAt"
            ],
            None,
        ),
        ("2026-11-25T04:39:33.454261614Z", 1795581573),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_epoch_seconds(stamp, seconds):
    value = vllm_container_run._epoch_seconds(stamp)
    if seconds is None and stamp.startswith("20"):
        assert isinstance(value, int)
    else:
        assert value == seconds
