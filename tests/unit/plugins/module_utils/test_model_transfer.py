"""Tests of module_utils.model_transfer: hashing while writing, resume, verified placement."""

import hashlib
import json
import os
import stat

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (
    git_blob_id,
    parse_manifest,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_transfer import (
    Destination,
    HashingWriter,
    Ownership,
    Progress,
    TransferError,
    hash_file,
    hash_files,
)

PAYLOAD = bytes(range(256)) * 4099  # not a multiple of any buffer size


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("cut", [0, 1, 4096, len(PAYLOAD) // 2, len(PAYLOAD) - 1, len(PAYLOAD)])
def test_resume_rebuilds_the_hash_of_the_prefix(tmp_path, cut):
    partial = tmp_path / "partial"
    partial.write_bytes(PAYLOAD[:cut])
    with HashingWriter(str(partial)) as writer:
        assert writer.resume(len(PAYLOAD)) == cut
        assert writer.tell() == cut
        writer.write(PAYLOAD[cut:])
        assert writer.hashes.result()["sha256"] == sha256(PAYLOAD)
    assert partial.read_bytes() == PAYLOAD


def test_resume_discards_a_partial_longer_than_the_file(tmp_path):
    partial = tmp_path / "partial"
    partial.write_bytes(PAYLOAD + b"junk")
    with HashingWriter(str(partial)) as writer:
        assert writer.resume(len(PAYLOAD)) == 0
        writer.write(PAYLOAD)
        assert writer.hashes.result()["sha256"] == sha256(PAYLOAD)
    assert partial.read_bytes() == PAYLOAD


def test_resume_does_not_touch_a_complete_file(tmp_path):
    partial = tmp_path / "partial"
    partial.write_bytes(PAYLOAD)
    os.utime(partial, ns=(1_000_000_000, 1_000_000_000))
    with HashingWriter(str(partial)) as writer:
        writer.resume(len(PAYLOAD))
    assert partial.stat().st_mtime_ns == 1_000_000_000


def test_seek_back_and_truncate_restart_like_a_server_that_ignored_range(tmp_path):
    # huggingface_hub's http_get: seek(tell() - resume_size), truncate(), write everything.
    partial = tmp_path / "partial"
    partial.write_bytes(PAYLOAD[:1000])
    with HashingWriter(str(partial)) as writer:
        writer.resume(len(PAYLOAD))
        writer.seek(writer.tell() - 1000)
        writer.truncate()
        assert writer.tell() == 0
        writer.write(PAYLOAD)
        assert writer.hashes.result()["sha256"] == sha256(PAYLOAD)
    assert partial.read_bytes() == PAYLOAD


def test_seek_forward_is_refused(tmp_path):
    with HashingWriter(str(tmp_path / "p")) as writer, pytest.raises(OSError, match="seeks back"):
        writer.seek(10)


def test_git_blob_id_is_computed_alongside_sha256(tmp_path):
    data = b'{"model_type": "gpt2"}\n'
    with HashingWriter(str(tmp_path / "p"), git_size=len(data)) as writer:
        writer.write(data)
        result = writer.hashes.result()
    assert result == {"sha256": sha256(data), "git_sha1": git_blob_id(data)}


def test_writer_reports_written_bytes(tmp_path):
    seen = []
    with HashingWriter(str(tmp_path / "p"), on_bytes=seen.append) as writer:
        writer.write(b"abc")
        writer.write(memoryview(b"defg"))
    assert seen == [3, 4]


def test_hash_file_and_parallel_hash_files(tmp_path):
    paths = {}
    for index in range(5):
        path = tmp_path / f"f{index}"
        path.write_bytes(PAYLOAD[index:])
        paths[f"f{index}"] = path
    counted = []
    hashes = hash_files(((k, str(p), k == "f0") for k, p in paths.items()), 3, counted.append)
    for key, path in paths.items():
        assert hashes[key]["sha256"] == sha256(path.read_bytes())
        assert hashes[key]["size"] == path.stat().st_size
        assert hashes[key]["mtime_ns"] == path.stat().st_mtime_ns
    assert hashes["f0"]["git_sha1"] == git_blob_id(PAYLOAD)
    assert "git_sha1" not in hashes["f1"]
    assert sum(counted) == sum(p.stat().st_size for p in paths.values())
    assert hash_file(str(paths["f1"]))["sha256"] == sha256(PAYLOAD[1:])


# --- Destination ---------------------------------------------------------------------------


def write_partial(dest: Destination, entry: dict, data: bytes) -> HashingWriter:
    dest.open_partial_area()
    writer = HashingWriter(dest.partial_path(entry))
    writer.resume(entry["size"])
    writer.write(data)
    return writer


def test_place_moves_a_verified_partial_onto_its_final_name(tmp_path):
    dest = Destination(str(tmp_path / "model"), Ownership())
    entry = {"path": "sub/dir/w.bin", "size": len(PAYLOAD), "sha256": sha256(PAYLOAD)}
    writer = write_partial(dest, entry, PAYLOAD)
    recorded = dest.place(writer, entry, mtime_ns=1_500_000_000_000_000_000)
    final = tmp_path / "model" / "sub" / "dir" / "w.bin"
    assert final.read_bytes() == PAYLOAD
    assert stat.S_IMODE(final.stat().st_mode) == 0o644
    assert stat.S_IMODE(final.parent.stat().st_mode) == 0o755
    assert final.stat().st_mtime_ns == 1_500_000_000_000_000_000
    assert recorded == dict(entry, mtime_ns=1_500_000_000_000_000_000)
    assert not os.path.exists(writer.path)
    # The journal vouches for the file, so a run killed right now loses nothing.
    assert dest.read_journal() == {"sub/dir/w.bin": recorded}


@pytest.mark.parametrize(
    ("data", "entry_override", "message"),
    [
        (PAYLOAD[:-1], {}, "bytes received"),
        (PAYLOAD[:-1] + b"X", {}, "sha256"),
        (PAYLOAD, {"sha256": None, "git_sha1": "0" * 40}, "git blob id"),
    ],
)
def test_place_refuses_and_discards_a_partial_that_does_not_verify(
    tmp_path, data, entry_override, message
):
    dest = Destination(str(tmp_path / "model"), Ownership())
    entry = dict(
        {"path": "w.bin", "size": len(PAYLOAD), "sha256": sha256(PAYLOAD)}, **entry_override
    )
    dest.open_partial_area()
    git_size = entry["size"] if entry.get("git_sha1") else None
    writer = HashingWriter(dest.partial_path(entry), git_size=git_size)
    writer.write(data)
    with pytest.raises(TransferError, match=message):
        dest.place(writer, entry, None)
    assert not (tmp_path / "model" / "w.bin").exists()
    assert not os.path.exists(writer.path)
    assert dest.read_journal() == {}


def test_place_replaces_an_existing_file_atomically(tmp_path):
    dest = Destination(str(tmp_path / "model"), Ownership())
    (tmp_path / "model").mkdir()
    final = tmp_path / "model" / "w.bin"
    final.write_bytes(b"old content")
    inode = final.stat().st_ino
    entry = {"path": "w.bin", "size": len(PAYLOAD), "sha256": sha256(PAYLOAD)}
    writer = write_partial(dest, entry, PAYLOAD)
    dest.place(writer, entry, None)
    assert final.read_bytes() == PAYLOAD
    assert final.stat().st_ino != inode  # a rename, not a rewrite in place


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_place_gives_files_and_new_directories_their_owner(tmp_path):
    dest = Destination(str(tmp_path / "model"), Ownership(65534, 65534))
    entry = {"path": "a/b.bin", "size": 3, "sha256": sha256(b"abc")}
    writer = write_partial(dest, entry, b"abc")
    dest.place(writer, entry, None)
    for path in (tmp_path / "model", tmp_path / "model" / "a", tmp_path / "model" / "a" / "b.bin"):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)
    assert tmp_path.stat().st_uid == 0  # only directories inside dest change owner


def test_remove_drops_directories_left_empty(tmp_path):
    dest = Destination(str(tmp_path / "model"), Ownership())
    (tmp_path / "model" / "a" / "b").mkdir(parents=True)
    (tmp_path / "model" / "a" / "b" / "x").write_bytes(b"x")
    (tmp_path / "model" / "keep").write_bytes(b"k")
    dest.remove("a/b/x")
    assert sorted(os.listdir(tmp_path / "model")) == ["keep"]


def test_manifest_write_is_atomic_and_readable(tmp_path):
    dest = Destination(str(tmp_path / "model"), Ownership())
    dest.make_dirs("")
    dest.write_manifest('{"version": 1, "source": "s", "revision": "r", "files": []}\n')
    assert (
        parse_manifest((tmp_path / "model" / ".llmops-manifest.json").read_text())["revision"]
        == "r"
    )
    assert [p.name for p in (tmp_path / "model").iterdir()] == [".llmops-manifest.json"]


def test_unreadable_manifest_is_ignored_not_trusted(tmp_path):
    (tmp_path / ".llmops-manifest.json").write_text("{broken")
    assert Destination(str(tmp_path), Ownership()).read_manifest() is None


def test_progress_file_is_rewritten_atomically(tmp_path):
    path = tmp_path / "progress.json"
    progress = Progress(str(path), files_total=2, bytes_total=100, phase="transfer")
    progress.begin("a")
    progress.add(40)
    progress.flush()
    data = json.loads(path.read_text())
    assert data["bytes_done"] == 40
    assert data["bytes_total"] == 100
    assert data["current"] == ["a"]
    progress.end("a")
    progress.flush()
    assert json.loads(path.read_text())["files_done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]
