"""File side of model_sync: hashing while bytes stream, partial files, atomic placement.

Private to llmops.gpu_serving; no stability promise outside this collection.

The rules every source follows (model_sources.py):

- bytes go to ``<dest>/.llmops-partial/<key>`` (model_manifest.partial_key), never to the
  final name; the hash is updated in the same loop that writes them, so nothing is read twice;
- an interrupted partial is resumed from its length: its prefix is hashed once to rebuild the
  hash state (hashlib objects cannot be saved), then the source continues from that offset;
- a complete partial is checked (size, sha256 or git blob id), fsync'ed, given its owner,
  mode and mtime, and only then os.replace'd onto the final name;
- each placed file is added to a journal, so a run killed between files loses no work;
  the manifest is written last, atomically, when every file is in place.

Standard library only; no AnsibleModule.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (
    COPY_BUFFER_BYTES,
    JOURNAL_NAME,
    MANIFEST_NAME,
    PARTIAL_DIR,
    PROGRESS_NAME,
    ManifestError,
    git_blob_header,
    parse_manifest,
    partial_key,
    render_manifest,
)

FILE_MODE = 0o644
DIR_MODE = 0o755
# Start writeback of every this many written bytes (Linux sync_file_range): the pages reach the
# disk while the copy goes on, so the fsync before the rename has little left to wait for and
# gigabytes of dirty pages never pile up.
WRITEBACK_BYTES = 64 * 1024 * 1024
_SYNC_FILE_RANGE = getattr(os, "sync_file_range", None)
_SYNC_FILE_RANGE_WRITE = getattr(os, "SYNC_FILE_RANGE_WRITE", 0)


class TransferError(Exception):
    """A file that could not be fetched or did not verify."""


class Ownership:
    """uid/gid to give files and directories; -1 leaves that id alone (os.chown semantics)."""

    def __init__(self, uid: int = -1, gid: int = -1):
        self.uid = uid
        self.gid = gid

    def differs(self, info: os.stat_result) -> bool:
        return (self.uid not in (-1, info.st_uid)) or (self.gid not in (-1, info.st_gid))

    def apply_fd(self, fd: int) -> None:
        if self.uid != -1 or self.gid != -1:
            os.fchown(fd, self.uid, self.gid)

    def apply_path(self, path: str) -> None:
        if self.uid != -1 or self.gid != -1:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)


# --- hashing -----------------------------------------------------------------------------


class Hashes:
    """sha256, plus the git blob id when the expected size is known (git hashes a header
    with the size first)."""

    def __init__(self, git_size: int | None = None):
        self.sha256 = hashlib.sha256()
        self.git = None
        if git_size is not None:
            self.git = hashlib.sha1(git_blob_header(git_size))

    def update(self, data: Any) -> None:
        self.sha256.update(data)
        if self.git is not None:
            self.git.update(data)

    def result(self) -> dict:
        out = {"sha256": self.sha256.hexdigest()}
        if self.git is not None:
            out["git_sha1"] = self.git.hexdigest()
        return out


def hash_stream(
    handle: BinaryIO,
    hashes: Hashes,
    limit: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Feed ``limit`` bytes (all when None) of ``handle`` to ``hashes``; returns the count."""
    buffer = bytearray(COPY_BUFFER_BYTES)
    view = memoryview(buffer)
    count = 0
    while limit is None or count < limit:
        want = len(buffer) if limit is None else min(len(buffer), limit - count)
        got = handle.readinto(view[:want])
        if not got:
            break
        hashes.update(view[:got])
        count += got
        if on_bytes is not None:
            on_bytes(got)
    return count


def hash_file(path: str, git: bool = False, on_bytes: Callable[[int], None] | None = None) -> dict:
    """{sha256, git_sha1 (if git), size, mtime_ns} of a file, read once."""
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        hashes = Hashes(info.st_size if git else None)
        hash_stream(handle, hashes, on_bytes=on_bytes)
    return dict(hashes.result(), size=info.st_size, mtime_ns=info.st_mtime_ns)


def hash_files(
    items: Iterable[tuple[str, str, bool]],
    workers: int,
    on_bytes: Callable[[int], None] | None = None,
) -> dict[str, dict]:
    """Hash many files in parallel: items are (key, absolute path, git). Returns key -> hashes.

    Threads are enough: hashlib releases the GIL while it hashes a buffer above 2 KiB and
    reads release it too, so N threads keep N cores busy.
    """
    items = list(items)
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        futures = {key: pool.submit(hash_file, path, git, on_bytes) for key, path, git in items}
        return {key: future.result() for key, future in futures.items()}


class HashingWriter:
    """A partial file opened for appending that hashes everything written to it.

    The interface the sources' copy loops write to: ``write``,
    ``tell``, ``seek`` + ``truncate`` (a server that ignores Range restarts the file from 0).
    """

    def __init__(
        self,
        path: str,
        git_size: int | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ):
        self.path = path
        self._git_size = git_size
        self.on_bytes = on_bytes
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags, 0o600)
        self._handle = os.fdopen(self._fd, "r+b", buffering=0)
        self.hashes = Hashes(git_size)
        self.position = 0
        self.resumed = 0
        self._written_back = 0

    def resume(self, limit: int, on_bytes: Callable[[int], None] | None = None) -> int:
        """Rebuild the hash over what the partial already holds (at most ``limit`` bytes:
        more than the file's size means the partial is not this file's, so start over)."""
        length = os.fstat(self._fd).st_size
        if length > limit:
            self._handle.truncate(0)
            length = 0
        self._handle.seek(0)
        self.hashes = Hashes(self._git_size)
        got = hash_stream(self._handle, self.hashes, limit=length, on_bytes=on_bytes)
        if got != length:
            raise OSError(f"{self.path}: read {got} of {length} bytes while resuming")
        # No truncate when nothing is cut: ftruncate() would touch the mtime.
        self.position = self.resumed = self._written_back = got
        return got

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hashes.update(view)
        written = 0
        while written < len(view):
            written += self._handle.write(view[written:])
        self.position += written
        if _SYNC_FILE_RANGE is not None and self.position - self._written_back >= WRITEBACK_BYTES:
            _SYNC_FILE_RANGE(
                self._fd,
                self._written_back,
                self.position - self._written_back,
                _SYNC_FILE_RANGE_WRITE,
            )
            self._written_back = self.position
        if self.on_bytes is not None:
            self.on_bytes(written)
        return written

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or offset > self.position:
            raise OSError("HashingWriter only seeks back to an earlier offset")
        if offset < self.position:
            self._restart(offset)
        return self.position

    def truncate(self, size: int | None = None) -> int:
        size = self.position if size is None else size
        if size < self.position:
            self._restart(size)
        return self.position

    def _restart(self, offset: int) -> None:
        # Discard everything after offset and rebuild the hash of what stays.
        self._handle.truncate(offset)
        self.resume(offset)
        self._handle.seek(offset)

    def flush(self) -> None:
        pass

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def copy_into(source: BinaryIO, writer: HashingWriter) -> int:
    """Copy the rest of ``source`` into ``writer`` (hashing in the same pass)."""
    buffer = bytearray(COPY_BUFFER_BYTES)
    view = memoryview(buffer)
    count = 0
    while True:
        got = source.readinto(view)
        if not got:
            return count
        writer.write(view[:got])
        count += got


# --- destination layout ------------------------------------------------------------------


LINK_REFUSED = "a symbolic link inside dest; model_sync does not follow links there (remove it)"


def refuse_links(root: str, relative: str, include_last: bool) -> None:
    """Raise OSError (ELOOP) when a directory component of ``relative`` below ``root`` (and the
    last one with ``include_last``) is a symbolic link.

    model_sync runs as root in directories its unprivileged owner can write: a link planted
    there would lead a chmod, chown, rename or unlink out of the model (``tokenizer`` ->
    ``/etc``). The root itself was resolved and checked against the base directory already.
    """
    parts = [part for part in relative.split("/") if part] if relative else []
    if not include_last:
        parts = parts[:-1]
    path = root
    for part in parts:
        path = os.path.join(path, part)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            raise OSError(errno.ELOOP, LINK_REFUSED, path)


def _open_no_follow(path: str, directory: bool) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if directory else 0)
    return os.open(path, flags)


class Destination:
    """The model directory: stat of files, partials, journal, placement, manifest.

    Symbolic links inside it are never followed: a file that is a link counts as missing (the
    sync replaces the link itself), a directory that is a link fails the sync naming it.
    """

    def __init__(self, root: str, owner: Ownership):
        self.root = root
        self.owner = owner
        self.partial_dir = os.path.join(root, PARTIAL_DIR)
        self.manifest_path = os.path.join(root, MANIFEST_NAME)
        self.journal_path = os.path.join(self.partial_dir, JOURNAL_NAME)
        self.progress_path = os.path.join(self.partial_dir, PROGRESS_NAME)
        self._lock = threading.Lock()
        self._journal: dict[str, dict] = {}
        self._dirs_made: set[str] = set()

    def path(self, relative: str) -> str:
        return os.path.join(self.root, *relative.split("/"))

    def stat(self, relative: str) -> os.stat_result | None:
        refuse_links(self.root, relative, include_last=False)
        try:
            info = os.lstat(self.path(relative))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        return info if stat.S_ISREG(info.st_mode) else None

    def read_manifest(self) -> dict | None:
        """The destination's manifest, or None when absent or unusable (then nothing is
        trusted and every file is checked by hash against the source)."""
        try:
            with open(self.manifest_path, encoding="utf-8") as handle:
                return parse_manifest(handle.read(), self.manifest_path)
        except (OSError, ManifestError):
            return None

    def read_journal(self) -> dict[str, dict]:
        try:
            with open(self.journal_path, encoding="utf-8") as handle:
                journal = parse_manifest(handle.read(), self.journal_path)
        except (OSError, ManifestError):
            return {}
        return {entry["path"]: entry for entry in journal["files"]}

    def partial_path(self, entry: Mapping[str, Any]) -> str:
        return os.path.join(self.partial_dir, partial_key(entry))

    def partial_sizes(self, entries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        sizes = {}
        for entry in entries:
            try:
                sizes[entry["path"]] = os.stat(self.partial_path(entry)).st_size
            except OSError:
                continue
        return sizes

    def make_dirs(self, relative_dir: str) -> None:
        """Create the destination (and a file's parent directories) owned like the files."""
        target = self.path(relative_dir) if relative_dir else self.root
        with self._lock:
            if target in self._dirs_made:
                return
            refuse_links(self.root, relative_dir, include_last=True)
            missing = []
            probe = target
            while not os.path.isdir(probe):
                missing.append(probe)
                parent = os.path.dirname(probe)
                if parent == probe:
                    break
                probe = parent
            for directory in reversed(missing):
                os.mkdir(directory, DIR_MODE)
                os.chmod(directory, DIR_MODE)
                if directory == self.root or directory.startswith(self.root + os.sep):
                    self.owner.apply_path(directory)
            self._dirs_made.add(target)

    def open_partial_area(self) -> None:
        self.make_dirs("")
        os.makedirs(self.partial_dir, mode=0o700, exist_ok=True)

    def place(self, writer: HashingWriter, entry: Mapping[str, Any], mtime_ns: int | None) -> dict:
        """Check a complete partial against ``entry`` and move it onto its final name.

        Returns the entry to record in the manifest. A partial that does not verify is
        deleted (its bytes are wrong, resuming it would only repeat the error).
        """
        got = writer.hashes.result()
        problem = None
        if writer.position != entry["size"]:
            problem = f"{writer.position} bytes received, the source lists {entry['size']}"
        elif entry.get("sha256") and got["sha256"] != entry["sha256"]:
            problem = f"sha256 {got['sha256']} != {entry['sha256']} listed by the source"
        elif entry.get("git_sha1") and got.get("git_sha1") != entry["git_sha1"]:
            problem = (
                f"git blob id {got.get('git_sha1')} != {entry['git_sha1']} listed by the source"
            )
        if problem:
            writer.close()
            os.unlink(writer.path)
            raise TransferError(f"{entry['path']}: {problem}; the partial file was discarded")
        self.owner.apply_fd(writer._fd)
        os.fchmod(writer._fd, FILE_MODE)
        if mtime_ns is not None:
            os.utime(writer._fd, ns=(mtime_ns, mtime_ns))
        writer.fsync()
        writer.close()
        final = self.path(entry["path"])
        self.make_dirs(os.path.dirname(entry["path"]))
        os.replace(writer.path, final)
        recorded = {
            "path": entry["path"],
            "size": entry["size"],
            "sha256": got["sha256"],
            "mtime_ns": os.stat(final).st_mtime_ns,
        }
        if entry.get("git_sha1"):
            recorded["git_sha1"] = entry["git_sha1"]
        if entry.get("source_mtime_ns") is not None:
            recorded["source_mtime_ns"] = entry["source_mtime_ns"]
        self.record(recorded)
        return recorded

    def record(self, entry: dict) -> None:
        """Add a placed file to the journal (atomically rewritten: a kill loses nothing)."""
        with self._lock:
            self._journal[entry["path"]] = entry
            write_atomically(
                self.journal_path, render_manifest("", "", self._journal.values()), Ownership()
            )

    def fix_attributes(self, relative: str) -> bool:
        """Give a file in place its owner and mode; True when something changed. Through a
        descriptor opened without following links: never the target of a link."""
        refuse_links(self.root, relative, include_last=False)
        path = self.path(relative)
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        fd = _open_no_follow(path, directory=False)
        try:
            return self._fix_fd(fd, FILE_MODE)
        finally:
            os.close(fd)

    def _fix_fd(self, fd: int, mode: int) -> bool:
        info = os.fstat(fd)
        changed = False
        if self.owner.differs(info):
            self.owner.apply_fd(fd)
            changed = True
        if stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)
            changed = True
        return changed

    def fix_dir_attributes(self, relative_dirs: Iterable[str]) -> bool:
        changed = False
        for relative in sorted(set(relative_dirs)):
            path = self.path(relative) if relative else self.root
            refuse_links(self.root, relative, include_last=True)
            if not os.path.isdir(path):
                continue
            fd = _open_no_follow(path, directory=True)
            try:
                changed = self._fix_fd(fd, DIR_MODE) or changed
            finally:
                os.close(fd)
        return changed

    def remove(self, relative: str) -> None:
        refuse_links(self.root, relative, include_last=False)
        os.unlink(self.path(relative))
        # Drop directories the removal left empty, up to (not including) the root.
        parent = os.path.dirname(relative)
        while parent:
            try:
                os.rmdir(self.path(parent))
            except OSError:
                break
            parent = os.path.dirname(parent)

    def write_manifest(self, text: str) -> None:
        fsync_tree_dirs(self.root)
        write_atomically(self.manifest_path, text, self.owner, FILE_MODE)

    def close_partial_area(self) -> None:
        shutil.rmtree(self.partial_dir, ignore_errors=True)


def fsync_tree_dirs(root: str) -> None:
    """fsync every directory of the model, so the renames are durable before the manifest
    that vouches for them."""
    for directory, dirnames, _files in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != PARTIAL_DIR]
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(path: str, text: str, owner: Ownership, mode: int = 0o600) -> None:
    temp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            owner.apply_fd(handle.fileno())
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    directory_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


# --- progress ----------------------------------------------------------------------------


class Progress:
    """Byte and file counters shared by worker threads, written to a JSON file at most once
    a second (atomically: the reader never sees half a file)."""

    def __init__(self, path: str | None, files_total: int, bytes_total: int, phase: str):
        self.path = path
        self.files_total = files_total
        self.bytes_total = bytes_total
        self.phase = phase
        self.bytes_done = 0
        self.files_done = 0
        self.current: list[str] = []
        self.started = time.monotonic()
        self._written = 0.0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.bytes_done += count
            self._maybe_write()

    def begin(self, path: str) -> None:
        with self._lock:
            self.current.append(path)
            self._maybe_write()

    def end(self, path: str) -> None:
        with self._lock:
            if path in self.current:
                self.current.remove(path)
            self.files_done += 1
            self._maybe_write()

    def snapshot(self) -> dict:
        return {
            "phase": self.phase,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "elapsed": round(time.monotonic() - self.started, 3),
            "current": list(self.current),
            # The controller checks that this process still runs (the async wrapper records
            # nothing when it dies with the module).
            "pid": os.getpid(),
        }

    def _maybe_write(self, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._written < 1.0:
            return
        self._written = now
        try:
            temp = f"{self.path}.tmp"
            with open(temp, "w", encoding="utf-8") as handle:
                json.dump(self.snapshot(), handle)
            os.replace(temp, self.path)
        except OSError:
            # Progress is a courtesy; a full disk must fail the transfer, not this.
            pass

    def flush(self) -> None:
        with self._lock:
            self._maybe_write(force=True)
