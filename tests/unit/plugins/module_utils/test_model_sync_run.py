"""Tests of module_utils.model_sync_run with a directory source on this machine."""

import fcntl
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils import (
    model_sources,
    model_sync_run,
    model_transfer,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (
    MANIFEST_NAME,
    PARTIAL_DIR,
    parse_manifest,
    partial_key,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_sync_run import (
    SyncError,
    sync_model,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_transfer import (
    Destination,
    Ownership,
)

FILES = {
    "config.json": b'{"architectures": ["Qwen3MoeForCausalLM"]}\n',
    "model-00001-of-00002.safetensors": os.urandom(3 * 1024 * 1024 + 17),
    "model-00002-of-00002.safetensors": os.urandom(2 * 1024 * 1024 + 5),
    "tokenizer/vocab.txt": b"a\nb\nc\n",
}


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "source"
    for name, data in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def options(source, dest, **extra):
    return dict(
        {
            "dest": str(dest),
            "source": str(source),
            "revision": "",
            "verify": "fast",
            "include": [],
            "exclude": [],
            "min_free_bytes": 0,
            "workers": 2,
            "timeout": 10,
        },
        **extra,
    )


def run(source, dest, check_mode=False, **extra):
    return sync_model(options(source, dest, **extra), check_mode, Ownership())


def tree(root: Path) -> dict:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_check_mode_on_an_empty_host_writes_nothing(source, tmp_path):
    dest = tmp_path / "home" / "llm" / "model" / "m"
    result = run(source, dest, check_mode=True)
    assert result["changed"] is True
    assert result["files_to_transfer"] == 4
    assert result["bytes_to_transfer"] == sum(map(len, FILES.values()))
    assert result["files_transferred"] == 0
    assert sorted(result["transfer"]) == sorted(FILES)
    assert not (tmp_path / "home").exists()


def test_sync_then_rerun_is_unchanged_and_reads_nothing(source, tmp_path, monkeypatch):
    dest = tmp_path / "dest"
    first = run(source, dest)
    assert first["changed"] is True
    assert first["files_transferred"] == 4
    assert first["bytes_transferred"] == sum(map(len, FILES.values()))
    assert tree(dest) == dict(FILES, **{MANIFEST_NAME: (dest / MANIFEST_NAME).read_bytes()})
    manifest = parse_manifest((dest / MANIFEST_NAME).read_text())
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256(FILES[entry["path"]]).hexdigest()
        assert entry["mtime_ns"] == (dest / entry["path"]).stat().st_mtime_ns
        # The destination keeps the source's mtime, as cp -p does.
        assert entry["mtime_ns"] == (source / entry["path"]).stat().st_mtime_ns

    def no_reading(*args, **kwargs):
        raise AssertionError("a no-op run must not hash anything")

    monkeypatch.setattr(model_sync_run, "hash_files", no_reading)
    second = run(source, dest)
    assert second["changed"] is False
    assert second["files_transferred"] == 0
    assert second["bytes_to_transfer"] == 0
    assert run(source, dest, check_mode=True)["changed"] is False


def test_flipped_byte_with_same_size_and_mtime_is_found_by_full_verify(source, tmp_path):
    dest = tmp_path / "dest"
    run(source, dest)
    target = dest / "model-00001-of-00002.safetensors"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[12345] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert run(source, dest)["changed"] is False  # fast trusts size and mtime
    check = run(source, dest, check_mode=True, verify="full")
    assert check["changed"] is True
    assert check["transfer"] == ["model-00001-of-00002.safetensors"]
    assert target.read_bytes() == bytes(data)  # check mode repaired nothing
    result = run(source, dest, verify="full")
    assert result["files_repaired"] == 1
    assert result["files_verified"] == 4
    assert target.read_bytes() == FILES["model-00001-of-00002.safetensors"]
    assert run(source, dest, verify="full")["changed"] is False


def test_partial_file_is_resumed_from_its_length(source, tmp_path):
    dest = tmp_path / "dest"
    name = "model-00001-of-00002.safetensors"
    # What an interrupted run leaves: a partial named after the file's identity.
    entry = {
        "path": name,
        "size": len(FILES[name]),
        "sha256": None,
        "source_mtime_ns": (source / name).stat().st_mtime_ns,
    }
    partial = dest / PARTIAL_DIR / partial_key(entry)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(FILES[name][:1_000_000])
    result = run(source, dest)
    assert result["bytes_resumed"] == 1_000_000
    assert result["bytes_transferred"] == sum(map(len, FILES.values())) - 1_000_000
    assert (dest / name).read_bytes() == FILES[name]
    assert not (dest / PARTIAL_DIR).exists()


def test_partial_of_other_content_is_not_resumed(source, tmp_path):
    dest = tmp_path / "dest"
    name = "model-00001-of-00002.safetensors"
    stale = {"path": name, "size": len(FILES[name]), "sha256": None, "source_mtime_ns": 1}
    partial = dest / PARTIAL_DIR / partial_key(stale)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 1000)
    result = run(source, dest)
    assert result["bytes_resumed"] == 0
    assert (dest / name).read_bytes() == FILES[name]


def test_files_placed_before_a_kill_are_kept_from_the_journal(source, tmp_path, monkeypatch):
    dest = tmp_path / "dest"
    name = "model-00002-of-00002.safetensors"
    real_place = Destination.place

    def place_then_die(self, writer, entry, mtime_ns):
        if entry["path"] == name:
            writer.close()
            raise KeyboardInterrupt  # the process dies mid-run
        return real_place(self, writer, entry, mtime_ns)

    monkeypatch.setattr(Destination, "place", place_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(source, dest, workers=1)
    monkeypatch.setattr(Destination, "place", real_place)
    assert not (dest / MANIFEST_NAME).exists()  # written last: not yet
    assert not (dest / name).exists()  # no partial content under a final name
    journal = json.loads((dest / PARTIAL_DIR / "journal.json").read_text())
    done = {e["path"] for e in journal["files"]}
    assert done
    assert name not in done

    result = run(source, dest)
    assert result["files_transferred"] == 4 - len(done)
    assert result["bytes_resumed"] == len(FILES[name])  # the complete partial, verified
    assert tree(dest).keys() - {MANIFEST_NAME} == FILES.keys()
    assert not (dest / PARTIAL_DIR).exists()


def test_not_enough_space_is_refused_before_writing(source, tmp_path, monkeypatch):
    dest = tmp_path / "dest"
    total = sum(map(len, FILES.values()))

    def tight(path):
        return shutil._ntuple_diskusage(10 * total, 9 * total, total - 1)

    monkeypatch.setattr(model_sync_run.shutil, "disk_usage", tight)
    with pytest.raises(SyncError, match="not enough space") as raised:
        run(source, dest)
    assert raised.value.result["bytes_to_transfer"] == total
    assert not dest.exists()
    with pytest.raises(SyncError, match="must stay free"):
        run(source, dest, check_mode=True, min_free_bytes=1)

    monkeypatch.setattr(
        model_sync_run.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 0, total)
    )
    assert run(source, dest)["changed"] is True


def test_existing_files_without_manifest_are_adopted_when_the_hash_matches(source, tmp_path):
    # A model the operator downloaded by hand, then a mirror with a manifest.
    mirror = tmp_path / "mirror"
    run(source, mirror)
    dest = tmp_path / "dest"
    dest.mkdir()
    for name, data in FILES.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data if name != "config.json" else b"{}" + data[2:])
    result = run(mirror, dest)
    assert result["files_adopted"] == 3
    assert result["transfer"] == ["config.json"]
    assert result["bytes_transferred"] == len(FILES["config.json"])
    assert tree(dest).keys() - {MANIFEST_NAME} == FILES.keys()
    assert (dest / "config.json").read_bytes() == FILES["config.json"]


def test_files_dropped_by_the_source_are_removed_but_foreign_files_kept(source, tmp_path):
    dest = tmp_path / "dest"
    run(source, dest)
    (dest / "notes.txt").write_text("mine")
    (source / "tokenizer" / "vocab.txt").unlink()
    result = run(source, dest)
    assert result["remove"] == ["tokenizer/vocab.txt"]
    assert not (dest / "tokenizer").exists()
    assert (dest / "notes.txt").read_text() == "mine"
    assert run(source, dest)["changed"] is False


def test_include_and_exclude(source, tmp_path):
    dest = tmp_path / "dest"
    result = run(source, dest, include=["*.safetensors", "*.json"], exclude=["model-00002-*"])
    assert sorted(result["transfer"]) == ["config.json", "model-00001-of-00002.safetensors"]
    assert result["files_total"] == 2


def test_source_manifest_drives_the_sync_and_must_match_the_bytes(source, tmp_path):
    mirror = tmp_path / "mirror"
    run(source, mirror)
    given = json.loads((mirror / MANIFEST_NAME).read_text())
    dest = tmp_path / "dest"
    result = run(source, dest, source_manifest=given)
    assert result["changed"] is True
    assert (
        parse_manifest((dest / MANIFEST_NAME).read_text())["files"][0]["sha256"]
        == (given["files"][0]["sha256"])
    )
    # A manifest that disagrees with the source's bytes stops the file, not the check.
    bad = json.loads(json.dumps(given))
    bad["files"][0]["sha256"] = "0" * 64
    other = tmp_path / "other"
    with pytest.raises(SyncError, match="sha256"):
        run(source, other, source_manifest=bad)
    assert not (other / bad["files"][0]["path"]).exists()


def test_a_second_writer_is_refused(source, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    fd = os.open(dest, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(SyncError, match="another model_sync"):
            run(source, dest)
    finally:
        os.close(fd)


def test_missing_source_and_empty_selection_fail_clearly(source, tmp_path):
    with pytest.raises(SyncError, match="does not exist"):
        run(tmp_path / "nope", tmp_path / "dest")
    with pytest.raises(SyncError, match="lists no files"):
        run(source, tmp_path / "dest", include=["*.gguf"])


def test_source_file_changing_size_during_the_sync_fails_that_file(source, tmp_path, monkeypatch):
    listed = model_sync_run.make_source

    def make_source(spec, opts):
        src = listed(spec, opts)
        original = src.listing

        def listing():
            revision, entries = original()
            (source / "config.json").write_bytes(b"{}")  # changes after listing
            return revision, entries

        src.listing = listing
        return src

    monkeypatch.setattr(model_sync_run, "make_source", make_source)
    with pytest.raises(SyncError, match="changed size since it was listed"):
        run(source, tmp_path / "dest")
    assert not (tmp_path / "dest" / "config.json").exists()


# --- torn copies, refused manifests, resumed bytes (issue 17) -----------------------------


def rewrite_during_copy(monkeypatch, path: Path, versions: list[bytes]):
    """Rewrite ``path`` in place (same size) after the first buffer of each copy of it, once
    per item of ``versions``: what a process that updates the share mid-sync does."""
    monkeypatch.setattr(model_transfer, "COPY_BUFFER_BYTES", 256 * 1024)
    real_copy = model_sources.copy_into
    pending = list(versions)

    def copy_into(handle, writer):
        if os.fstat(handle.fileno()).st_ino != path.stat().st_ino or not pending:
            return real_copy(handle, writer)
        first = handle.read(256 * 1024)
        writer.write(first)
        data = pending.pop(0)
        with open(path, "r+b") as rewrite:
            rewrite.write(data)
        return len(first) + real_copy(handle, writer)

    monkeypatch.setattr(model_sources, "copy_into", copy_into)


def test_a_source_file_rewritten_while_copied_is_copied_again(source, tmp_path, monkeypatch):
    name = "model-00001-of-00002.safetensors"
    newer = os.urandom(len(FILES[name]))
    rewrite_during_copy(monkeypatch, source / name, [newer])
    dest = tmp_path / "dest"
    result = run(source, dest)
    # The torn first copy (old head, new tail) was never placed: the file is one version whole,
    # and the manifest's sha256 is that version's.
    placed = (dest / name).read_bytes()
    assert placed == newer
    manifest = {e["path"]: e for e in parse_manifest((dest / MANIFEST_NAME).read_text())["files"]}
    assert manifest[name]["sha256"] == hashlib.sha256(newer).hexdigest()
    assert manifest[name]["source_mtime_ns"] == (source / name).stat().st_mtime_ns
    assert result["files_transferred"] == 4
    # The next run does not take the new content for a change (its mtime was recorded).
    assert run(source, dest)["changed"] is False


def test_a_source_file_that_keeps_changing_fails_and_is_not_placed(source, tmp_path, monkeypatch):
    name = "model-00001-of-00002.safetensors"
    size = len(FILES[name])
    rewrite_during_copy(monkeypatch, source / name, [os.urandom(size) for _ in range(3)])
    dest = tmp_path / "dest"
    with pytest.raises(SyncError, match="modified or replaced while it was read"):
        run(source, dest)
    assert not (dest / name).exists()
    assert not (dest / MANIFEST_NAME).exists()
    partials = [p for p in (dest / PARTIAL_DIR).iterdir() if p.name != "journal.json"]
    assert partials == []  # the torn bytes are not kept for a resume either


def test_a_source_file_replaced_by_rename_while_copied_is_detected(source, tmp_path, monkeypatch):
    name = "config.json"
    real_copy = model_sources.copy_into
    replaced = []

    def copy_into(handle, writer):
        count = real_copy(handle, writer)
        if not replaced and os.fstat(handle.fileno()).st_ino == (source / name).stat().st_ino:
            other = source / "config.json.new"
            other.write_bytes(b'{"architectures": ["Qwen3MoeForCausalLM"]}\n')  # same size
            os.replace(other, source / name)
            replaced.append(True)
        return count

    monkeypatch.setattr(model_sources, "copy_into", copy_into)
    dest = tmp_path / "dest"
    run(source, dest)
    assert replaced
    entry = next(
        e for e in parse_manifest((dest / MANIFEST_NAME).read_text())["files"] if e["path"] == name
    )
    assert entry["source_mtime_ns"] == (source / name).stat().st_mtime_ns


@pytest.mark.parametrize("origin", ["local", "source_manifest"])
def test_a_manifest_entry_without_sha256_is_refused(source, tmp_path, origin):
    mirror = tmp_path / "mirror"
    run(source, mirror)
    given = json.loads((mirror / MANIFEST_NAME).read_text())
    given["files"][1]["sha256"] = None
    dest = tmp_path / "dest"
    if origin == "local":
        (mirror / MANIFEST_NAME).write_text(json.dumps(given))
        with pytest.raises(SyncError, match="has no sha256"):
            run(mirror, dest)
    else:
        with pytest.raises(SyncError, match=r"source_manifest: .* has no sha256"):
            run(source, dest, source_manifest=given)
    assert not dest.exists()


def test_bytes_resumed_counts_every_partial_resumed_at_the_same_time(source, tmp_path, monkeypatch):
    """Two workers resuming at once: each partial's bytes count (the sum was read before the
    long resume and stored after it, so one worker's bytes were lost: half the total)."""
    dest = tmp_path / "dest"
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    (dest / PARTIAL_DIR).mkdir(parents=True)
    for name in names:
        entry = {
            "path": name,
            "size": len(FILES[name]),
            "sha256": None,
            "source_mtime_ns": (source / name).stat().st_mtime_ns,
        }
        (dest / PARTIAL_DIR / partial_key(entry)).write_bytes(FILES[name][:1_000_000])
    both_resuming = threading.Barrier(2, timeout=10)
    real_resume = model_transfer.HashingWriter.resume

    def resume(self, limit, on_bytes=None):
        if os.path.getsize(self.path):
            both_resuming.wait()  # both workers are inside resume() together
        return real_resume(self, limit, on_bytes)

    monkeypatch.setattr(model_transfer.HashingWriter, "resume", resume)
    result = run(source, dest, include=names, workers=2)
    assert result["bytes_resumed"] == 2_000_000
    assert result["bytes_transferred"] == sum(len(FILES[n]) for n in names) - 2_000_000


def test_bytes_resumed_after_the_reported_kill_is_every_partial_byte(tmp_path, monkeypatch):
    """The figures of issue 17: a sync killed while two workers fetched two shards at the same
    rate left two partials of 204 MiB each (427,819,008 bytes); the next run reported
    bytes_resumed 213,909,504, one partial's worth. Same sizes here, on sparse files (a random
    first MiB, zeros after it) so the test writes little to disk."""
    partial_size = 204 * 1024 * 1024
    shard_size = 256 * 1024 * 1024
    source = tmp_path / "source"
    dest = tmp_path / "dest"
    (dest / PARTIAL_DIR).mkdir(parents=True)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for name in names:
        head = os.urandom(1024 * 1024)
        shard = source / name
        shard.parent.mkdir(parents=True, exist_ok=True)
        with open(shard, "wb") as handle:
            handle.write(head)
            handle.truncate(shard_size)
        entry = {
            "path": name,
            "size": shard_size,
            "sha256": None,
            "source_mtime_ns": shard.stat().st_mtime_ns,
        }
        with open(dest / PARTIAL_DIR / partial_key(entry), "wb") as handle:
            handle.write(head)
            handle.truncate(partial_size)
    both_resuming = threading.Barrier(2, timeout=30)
    real_resume = model_transfer.HashingWriter.resume

    def resume(self, limit, on_bytes=None):
        both_resuming.wait()  # the two workers resume at the same time, as after the kill
        return real_resume(self, limit, on_bytes)

    monkeypatch.setattr(model_transfer.HashingWriter, "resume", resume)
    result = run(source, dest, workers=8)
    assert result["bytes_resumed"] == 427_819_008 == 2 * partial_size
    assert result["bytes_transferred"] == 2 * (shard_size - partial_size)
    assert result["files_transferred"] == 2
    for name in names:
        assert (dest / name).stat().st_size == shard_size


# --- bad destinations, ownership outside the base, state absent (issue 15) ----------------


def test_a_dest_that_is_a_file_or_below_one_is_refused(source, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("not a directory")
    with pytest.raises(SyncError, match="dest exists and is not a directory"):
        run(source, plain)
    with pytest.raises(SyncError, match=r"plain, a parent of dest, exists and is not a dir"):
        run(source, plain / "model")
    assert plain.read_text() == "not a directory"


@pytest.mark.parametrize("where", ["same", "dest inside", "source inside"])
def test_dest_and_source_that_overlap_are_refused(source, tmp_path, where):
    dest = {"same": source, "dest inside": source / "copy", "source inside": source.parent}[where]
    with pytest.raises(SyncError, match="choose a dest outside the source"):
        run(source, dest)
    assert not (source / "copy").exists()
    assert not (dest / MANIFEST_NAME).exists()


def test_permission_denied_is_a_message_not_a_traceback(source, tmp_path, monkeypatch):
    def refuse(self, relative_dir):
        raise PermissionError(13, "Permission denied", str(tmp_path / "dest"))

    monkeypatch.setattr(Destination, "make_dirs", refuse)
    with pytest.raises(SyncError, match=r"dest: Permission denied \(model_sync runs as uid"):
        run(source, tmp_path / "dest")


def test_an_unreadable_source_directory_fails_instead_of_syncing_less(source, monkeypatch):
    real_walk = os.walk

    def walk(top, onerror=None, followlinks=False):
        onerror(PermissionError(13, "Permission denied", str(source / "tokenizer")))
        yield from real_walk(top, followlinks=followlinks)

    monkeypatch.setattr(model_sources.os, "walk", walk)
    with pytest.raises(SyncError, match=r"cannot list the source: .*tokenizer: Permission denied"):
        run(source, source.parent / "dest")


def test_dest_outside_the_base_dir_is_refused_links_resolved(source, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "escape").symlink_to(tmp_path / "elsewhere")
    for dest, match in [
        (tmp_path / "other", "is not inside the model base directory"),
        (base, "is not inside the model base directory"),
        (base / "escape" / "m", "resolves to"),
    ]:
        with pytest.raises(SyncError, match=match):
            run(source, dest, base_dir=str(base))
    assert not (tmp_path / "other").exists()
    assert not (tmp_path / "elsewhere").exists()
    assert run(source, base / "org" / "m", base_dir=str(base))["changed"] is True


def test_an_existing_dest_outside_a_base_keeps_its_owner_and_mode(source, tmp_path):
    dest = tmp_path / "srv"
    dest.mkdir(mode=0o700)
    dest.chmod(0o700)
    (dest / "tokenizer").mkdir(mode=0o711)
    (dest / "tokenizer").chmod(0o711)
    nobody = Ownership(65534, 65534)
    sync_model(options(source, dest), False, nobody)
    for directory, mode in [(dest, 0o700), (dest / "tokenizer", 0o711)]:
        info = directory.stat()
        assert (info.st_uid, oct(info.st_mode & 0o777)) == (0, oct(mode)), directory
    assert (dest / "config.json").stat().st_uid == 65534  # its own files are given the owner
    assert sync_model(options(source, dest), False, nobody)["changed"] is False
    # Below the model base the same directory is a model directory and gets them.
    sync_model(options(source, dest, base_dir=str(tmp_path)), False, nobody)
    info = dest.stat()
    assert (info.st_uid, oct(info.st_mode & 0o777)) == (65534, "0o755")


def test_state_absent_removes_only_what_model_sync_wrote(source, tmp_path):
    base = tmp_path / "base"
    dest = base / "org" / "m"
    run(source, dest, base_dir=str(base))
    (dest / "notes.txt").write_text("mine")
    (dest / "tokenizer" / "vocab.txt").write_bytes(b"edited\n")  # changed since placed
    opts = {"dest": str(dest), "base_dir": str(base)}
    check = model_sync_run.remove_model(opts, check_mode=True)
    assert check["changed"] is True
    assert sorted(check["removed"]) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert check["kept"] == ["tokenizer/vocab.txt"]
    assert (dest / "config.json").exists()
    removed = model_sync_run.remove_model(opts, check_mode=False)
    assert removed["removed"] == check["removed"]
    assert tree(dest) == {"notes.txt": b"mine", "tokenizer/vocab.txt": b"edited\n"}
    assert model_sync_run.remove_model(opts, check_mode=False)["changed"] is False
    # A directory model_sync never wrote is left alone entirely, and outside the base refused.
    foreign = base / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    assert model_sync_run.remove_model(dict(opts, dest=str(foreign)), False)["changed"] is False
    assert (foreign / "config.json").exists()
    with pytest.raises(SyncError, match="not inside the model base"):
        model_sync_run.remove_model({"dest": str(tmp_path), "base_dir": str(base)}, False)


def test_state_absent_removes_an_emptied_model_directory(source, tmp_path):
    dest = tmp_path / "base" / "m"
    run(source, dest)
    result = model_sync_run.remove_model({"dest": str(dest), "base_dir": ""}, False)
    assert len(result["removed"]) == len(FILES)
    assert not dest.exists()


# --- links and system directories: nothing outside the model is touched --------------------


def _victim(tmp_path):
    """A directory outside the model with its own mode, as /etc would be."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    victim.chmod(0o700)
    (victim / "vocab.txt").write_bytes(FILES["tokenizer/vocab.txt"])
    (victim / "vocab.txt").chmod(0o600)
    return victim


def _attributes(path):
    info = path.lstat()
    return info.st_uid, info.st_gid, info.st_mode & 0o7777


def test_a_directory_link_inside_dest_fails_and_its_target_keeps_owner_and_mode(source, tmp_path):
    base = tmp_path / "base"
    dest = base / "org" / "m"
    nobody = Ownership(65534, 65534)
    sync_model(options(source, dest, base_dir=str(base)), False, nobody)
    victim = _victim(tmp_path)
    before = {p: _attributes(p) for p in (victim, victim / "vocab.txt")}
    shutil.rmtree(dest / "tokenizer")
    (dest / "tokenizer").symlink_to(victim)
    for check_mode in (True, False):
        with pytest.raises(SyncError, match=r"m/tokenizer: a symbolic link inside dest"):
            sync_model(options(source, dest, base_dir=str(base)), check_mode, nobody)
    assert {p: _attributes(p) for p in before} == before
    assert (victim / "vocab.txt").read_bytes() == FILES["tokenizer/vocab.txt"]


def test_a_file_replaced_by_a_link_is_replaced_not_followed(source, tmp_path):
    base = tmp_path / "base"
    dest = base / "m"
    nobody = Ownership(65534, 65534)
    sync_model(options(source, dest, base_dir=str(base)), False, nobody)
    victim = _victim(tmp_path)
    outside = victim / "vocab.txt"
    before = _attributes(outside)
    (dest / "tokenizer" / "vocab.txt").unlink()
    (dest / "tokenizer" / "vocab.txt").symlink_to(outside)
    result = sync_model(options(source, dest, base_dir=str(base)), False, nobody)
    assert result["transfer"] == ["tokenizer/vocab.txt"]
    placed = dest / "tokenizer" / "vocab.txt"
    assert not placed.is_symlink()
    assert _attributes(placed) == (65534, 65534, 0o644)
    assert _attributes(outside) == before


def test_state_absent_keeps_files_below_a_link(source, tmp_path):
    base = tmp_path / "base"
    dest = base / "m"
    run(source, dest, base_dir=str(base))
    victim = _victim(tmp_path)
    shutil.rmtree(dest / "tokenizer")
    (dest / "tokenizer").symlink_to(victim)
    result = model_sync_run.remove_model({"dest": str(dest), "base_dir": str(base)}, False)
    assert result["kept"] == ["tokenizer/vocab.txt"]
    assert (victim / "vocab.txt").read_bytes() == FILES["tokenizer/vocab.txt"]
    assert not (dest / "config.json").exists()


@pytest.mark.parametrize("base", ["/", "/etc", "/usr/share/models", "/home", "/var/lib"])
def test_a_system_directory_is_never_a_model_base(source, base):
    with pytest.raises(SyncError, match=f"base_dir {base} must be a directory of its own"):
        run(source, os.path.join(base, "org", "m"), base_dir=base)
    with pytest.raises(SyncError, match="must be a directory of its own"):
        model_sync_run.remove_model({"dest": os.path.join(base, "m"), "base_dir": base}, False)


def test_a_base_that_links_to_a_system_directory_is_refused(source, tmp_path):
    (tmp_path / "base").symlink_to("/etc")
    with pytest.raises(SyncError, match=r"base_dir .*base \(resolves to /etc\) must be"):
        run(source, tmp_path / "base" / "m", base_dir=str(tmp_path / "base"))


# --- nothing is read twice ----------------------------------------------------------------


class ReadCounter:
    """Counts, per real path, the opens for reading by the sources (model_sources._open) and
    the bytes read by every read loop of the sync (hash_stream, copy_into)."""

    def __init__(self, monkeypatch):
        self.opens: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        real_open = model_sources._open
        real_hash_stream = model_transfer.hash_stream
        real_copy_into = model_sources.copy_into

        def counting_open(path, *args, **kwargs):
            key = os.path.realpath(path)
            self.opens[key] = self.opens.get(key, 0) + 1
            return real_open(path, *args, **kwargs)

        def counted(handle, before):
            key = os.readlink(f"/proc/self/fd/{handle.fileno()}")
            self.bytes[key] = self.bytes.get(key, 0) + handle.tell() - before

        def hash_stream(handle, hashes, limit=None, on_bytes=None):
            before = handle.tell()
            count = real_hash_stream(handle, hashes, limit, on_bytes)
            counted(handle, before)
            return count

        def copy_into(handle, writer):
            before = handle.tell()
            count = real_copy_into(handle, writer)
            counted(handle, before)
            return count

        monkeypatch.setattr(model_sources, "_open", counting_open)
        monkeypatch.setattr(model_transfer, "hash_stream", hash_stream)
        monkeypatch.setattr(model_sources, "copy_into", copy_into)


def test_the_first_sync_reads_every_source_byte_once_and_nothing_else(
    source, tmp_path, monkeypatch
):
    counter = ReadCounter(monkeypatch)
    dest = tmp_path / "dest"
    run(source, dest, workers=2)
    sources = {os.path.realpath(source / name): len(data) for name, data in FILES.items()}
    assert {p: n for p, n in counter.bytes.items() if n} == sources
    assert {p: n for p, n in counter.opens.items() if p in sources} == dict.fromkeys(sources, 1)
    # Nothing under dest (partials, placed files) was read back to be hashed.
    assert not [p for p, n in counter.bytes.items() if n and p.startswith(str(dest))]


def test_a_first_sync_from_a_synced_copy_reads_each_file_once(source, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    run(source, mirror)
    counter = ReadCounter(monkeypatch)
    run(mirror, tmp_path / "dest", workers=2)
    copied = {os.path.realpath(mirror / name): len(data) for name, data in FILES.items()}
    assert {p: n for p, n in counter.bytes.items() if n} == copied
