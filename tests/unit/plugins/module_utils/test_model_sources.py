"""Tests of module_utils.model_sources.HubSource's use of huggingface_hub's public API, with
the client's functions replaced by fakes (the integration tests drive the real client
against a Hub stand-in; Xet storage has no stand-in, so its branch is tested here)."""

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import huggingface_hub
import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils import model_sources
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (
    MANIFEST_NAME,
    parse_manifest,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_sync_run import (
    SyncError,
    sync_model,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_transfer import Ownership

COMMIT = "a" * 40
SHARD = os.urandom(300_000)
FILES = {"config.json": b"{}\n", "model.safetensors": SHARD}


class FakeApi:
    """HfApi with model_info and get_paths_info answering for one Xet-backed shard."""

    calls: ClassVar[list[str]] = []

    def __init__(self, endpoint=None, token=None):
        pass

    def model_info(self, repo_id, revision=None, files_metadata=False, timeout=None):
        FakeApi.calls.append(f"model_info {revision} timeout={timeout}")
        lfs = SimpleNamespace(size=len(SHARD), sha256=hashlib.sha256(SHARD).hexdigest())
        blob = hashlib.sha1(b"blob 3\x00{}\n").hexdigest()
        return SimpleNamespace(
            sha=COMMIT,
            gated=False,
            siblings=[
                SimpleNamespace(rfilename="config.json", size=3, blob_id=blob, lfs=None),
                SimpleNamespace(
                    rfilename="model.safetensors", size=len(SHARD), blob_id="b" * 40, lfs=lfs
                ),
            ],
        )

    def get_paths_info(self, repo_id, paths, revision=None):
        FakeApi.calls.append(f"paths_info {sorted(paths)} {revision}")
        return [SimpleNamespace(path=p, xet_hash="c" * 64) for p in paths]


@pytest.fixture
def fake_hub(monkeypatch):
    FakeApi.calls = []
    downloads = []
    served = dict(FILES)

    def hf_hub_download(repo_id, filename, *, revision, local_dir, token, endpoint, etag_timeout):
        downloads.append((filename, revision, etag_timeout))
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(served[filename])
        return str(target)

    def fetch(self, entry, writer):
        writer.write(served[entry["path"]])

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(model_sources, "xet_available", lambda: True)
    monkeypatch.setattr(model_sources.HubSource, "fetch", fetch)
    return SimpleNamespace(downloads=downloads, served=served)


def options(dest, **extra):
    return dict(
        {
            "dest": str(dest),
            "source": "hf://acme/xet-model@v1",
            "verify": "fast",
            "workers": 2,
            "timeout": 7,
            "hf_endpoint": "",
        },
        **extra,
    )


def test_xet_files_go_through_hf_hub_download_and_are_verified_right_after(fake_hub, tmp_path):
    dest = tmp_path / "model"
    result = sync_model(options(dest), False, Ownership())
    assert result["revision"] == COMMIT
    assert fake_hub.downloads == [("model.safetensors", COMMIT, 7)]  # pinned commit, timeout
    assert (dest / "model.safetensors").read_bytes() == SHARD
    assert "model_info v1 timeout=7" in FakeApi.calls
    manifest = {e["path"]: e for e in parse_manifest((dest / MANIFEST_NAME).read_text())["files"]}
    assert manifest["model.safetensors"]["sha256"] == hashlib.sha256(SHARD).hexdigest()
    assert not (dest / ".llmops-partial").exists()


def test_a_xet_download_that_does_not_match_the_hubs_sha256_is_not_placed(fake_hub, tmp_path):
    fake_hub.served["model.safetensors"] = os.urandom(len(SHARD))
    dest = tmp_path / "model"
    with pytest.raises(SyncError, match=r"model.safetensors: sha256 .* listed by the source"):
        sync_model(options(dest), False, Ownership())
    assert len(fake_hub.downloads) == 2  # fetched once more from scratch, then refused
    assert not (dest / "model.safetensors").exists()
    assert (dest / "config.json").read_bytes() == b"{}\n"
