"""Model weight manifests: what a model directory must hold, and what a sync has to do.

Private to llmops.gpu_serving; no stability promise outside this collection.

A manifest lists every file of a model with its size and sha256. The source's manifest (the
Hub's LFS sha256s, a mirror's or another host's manifest file, or a listing of a directory)
says what the destination must hold; the destination's own manifest, written last and
atomically by model_sync as ``.llmops-manifest.json``, records what it holds, with the mtime of
every file after it was verified. Comparing the two plus a stat() of each file tells, without
reading a byte, which files are already in place (``verify: fast``); ``verify: full`` rehashes.

Everything here is pure: dicts, lists and strings in and out, standard library only. The file
and network side lives in model_transfer.py.

Entry dicts (one per file)::

    path             relative POSIX path inside the model directory (checked by check_path)
    size             bytes
    sha256           lower-case hex, or None when the source does not publish it
    git_sha1         git blob id (Hub files stored in git, not LFS), optional
    mtime_ns         mtime of the destination file when it was verified (destination only)
    source_mtime_ns  mtime of the source file (sources without sha256: a directory, rsync)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

MANIFEST_NAME = ".llmops-manifest.json"
PARTIAL_DIR = ".llmops-partial"
JOURNAL_NAME = "journal.json"
PROGRESS_NAME = "progress.json"
RESERVED_NAMES = frozenset({MANIFEST_NAME, PARTIAL_DIR})
MANIFEST_VERSION = 1

# Big enough that the hash and the system calls run on long runs of bytes (hashlib releases
# the GIL above 2 KiB, so threads hash in parallel); small enough for several workers.
COPY_BUFFER_BYTES = 8 * 1024 * 1024

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_HUB_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_SCP_LIKE = re.compile(r"^(?:[^/:@\s]+@)?[^/:@\s]+:(?!//)")
_RSYNC_LIST_LINE = re.compile(
    r"^(?P<mode>[-dlcbps][-rwxsStT]{9})\s+(?P<size>[\d,.]+)\s+"
    r"(?P<date>\d{4}/\d{2}/\d{2})\s+(?P<time>\d{2}:\d{2}:\d{2})\s(?P<name>.+)$"
)
_RSYNC_ESCAPE = re.compile(r"\\#([0-7]{3})")

GIB = 1024**3


class ManifestError(ValueError):
    """A manifest, listing or source specification that cannot be used."""


# --- paths -------------------------------------------------------------------------------


def check_path(path: Any) -> str:
    """Return ``path`` if it is a safe relative path inside a model directory, else raise.

    Paths come from remote manifests and Hub listings: an absolute path or a ``..`` component
    would write outside the destination, and the reserved names are model_sync's own files.
    """
    if not isinstance(path, str) or not path:
        raise ManifestError(f"file path {path!r} is not a non-empty string")
    if "\x00" in path or "\\" in path:
        raise ManifestError(f"file path {path!r} contains a NUL or a backslash")
    if path.startswith("/"):
        raise ManifestError(f"file path {path!r} is absolute; manifests hold relative paths")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ManifestError(f"file path {path!r} has an empty, '.' or '..' component")
    if parts[0] in RESERVED_NAMES:
        raise ManifestError(f"file path {path!r} uses a name model_sync reserves for itself")
    return path


def select_paths(
    entries: Iterable[Mapping[str, Any]], include: list[str], exclude: list[str]
) -> list[dict]:
    """Entries whose path matches one of ``include`` (all when empty) and none of ``exclude``.

    Patterns are shell globs (fnmatch) against the whole relative path, as in
    huggingface_hub's allow_patterns/ignore_patterns: ``*.safetensors``, ``original/*``.
    """
    selected = []
    for entry in entries:
        path = entry["path"]
        if include and not any(fnmatch.fnmatchcase(path, pattern) for pattern in include):
            continue
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in exclude):
            continue
        selected.append(dict(entry))
    return selected


# --- sources -----------------------------------------------------------------------------


def parse_source(source: str, revision: str = "") -> dict:
    """Classify a ``source`` option. Returns a dict with ``kind`` and its fields.

    kinds: ``hf`` (repo_id, revision), ``local`` (path), ``rsync`` (url: rsync:// or
    [user@]host:/path), ``http`` (url: https:// or http:// base URL of a mirror).
    """
    if not isinstance(source, str) or not source.strip():
        raise ManifestError("source must be a non-empty string")
    source = source.strip()
    if source.startswith("hf://"):
        repo_id, _, pinned = source[len("hf://") :].partition("@")
        repo_id = repo_id.strip("/")
        if not _HUB_REPO.match(repo_id):
            raise ManifestError(
                f"source {source!r}: expected hf://<org>/<name>[@<revision>], e.g. "
                "hf://Qwen/Qwen3-30B-A3B"
            )
        if pinned and revision and pinned != revision:
            raise ManifestError(
                f"source {source!r} pins revision {pinned!r} but revision is {revision!r}"
            )
        return {"kind": "hf", "repo_id": repo_id, "revision": pinned or revision}
    if revision:
        raise ManifestError(f"revision applies to hf:// sources only, not to {source!r}")
    if source.startswith("rsync://"):
        return {"kind": "rsync", "url": source.rstrip("/")}
    if source.startswith(("https://", "http://")):
        return {"kind": "http", "url": source.rstrip("/")}
    if source.startswith("/"):
        return {"kind": "local", "path": source.rstrip("/") or "/"}
    if _SCP_LIKE.match(source):
        return {"kind": "rsync", "url": source.rstrip("/")}
    raise ManifestError(
        f"source {source!r} is not one of: hf://<org>/<name>[@<revision>], an absolute path "
        "on the host, rsync://host/module/path, [user@]host:/path, https://mirror/base-url"
    )


def manifest_from_hub_info(info: Mapping[str, Any]) -> tuple[str, list[dict]]:
    """(commit, entries) from the Hub's model info with file metadata.

    ``info`` is the JSON of ``GET /api/models/<repo>/revision/<rev>?blobs=true`` (what
    ``HfApi().model_info(repo, revision, files_metadata=True)`` requests): ``sha`` is the
    commit, each of ``siblings`` has ``rfilename``, ``size``, ``blobId`` (git object id) and,
    for files stored in LFS, ``lfs.sha256``. For LFS files the size and sha256 are the
    payload's, so they are what lands on disk; git-stored files only have their git blob id,
    which the sync checks (and computes sha256) while the bytes stream.
    """
    commit = info.get("sha")
    if not isinstance(commit, str) or not _SHA1.match(commit):
        raise ManifestError(f"Hub answer has no commit sha (got {commit!r})")
    siblings = info.get("siblings")
    if not isinstance(siblings, list):
        raise ManifestError("Hub answer has no file list (siblings); was blobs=true requested?")
    entries = []
    for sibling in siblings:
        path = check_path(sibling.get("rfilename"))
        lfs = sibling.get("lfs") or None
        if lfs:
            size = lfs.get("size")
            sha256 = str(lfs.get("sha256") or lfs.get("oid") or "").lower()
            if not _SHA256.match(sha256):
                raise ManifestError(f"{path}: Hub LFS metadata has no sha256 ({lfs!r})")
            entry = {"path": path, "size": size, "sha256": sha256}
        else:
            size = sibling.get("size")
            blob = str(sibling.get("blobId") or "").lower()
            if not _SHA1.match(blob):
                raise ManifestError(f"{path}: Hub metadata has neither LFS sha256 nor a blobId")
            entry = {"path": path, "size": size, "sha256": None, "git_sha1": blob}
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{path}: Hub metadata has no size (got {size!r})")
        entries.append(entry)
    _reject_duplicates(entries)
    return commit, sorted(entries, key=lambda e: e["path"])


def git_blob_header(size: int) -> bytes:
    """The prefix git hashes before a blob's bytes: the blob id is sha1(header + data)."""
    return b"blob %d\x00" % size


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores for an LFS object (its blob id is the Hub's blobId)."""
    return (
        b"version https://git-lfs.github.com/spec/v1\n"
        + f"oid sha256:{sha256}\nsize {size}\n".encode("ascii")
    )


def git_blob_id(data: bytes) -> str:
    """Git's object id of a blob with these bytes (the Hub's ``blobId``)."""
    return hashlib.sha1(git_blob_header(len(data)) + data).hexdigest()


def parse_rsync_listing(text: str) -> list[dict]:
    """Entries from ``rsync -r -L --list-only --no-h`` output: regular files only.

    Sizes may carry digit grouping (rsync without --no-h); mtimes have second resolution and
    are read in the local time zone, which is how rsync prints them.
    """
    entries = []
    for line in text.splitlines():
        match = _RSYNC_LIST_LINE.match(line)
        if not match:
            if line.strip():
                raise ManifestError(f"cannot parse rsync listing line {line!r}")
            continue
        if match["mode"][0] != "-":
            continue
        name = _RSYNC_ESCAPE.sub(lambda m: chr(int(m[1], 8)), match["name"])
        name = name.encode("latin-1", "surrogateescape").decode("utf-8", "surrogateescape")
        if name.split("/")[0] in RESERVED_NAMES:
            continue
        stamp = time.mktime(time.strptime(f"{match['date']} {match['time']}", "%Y/%m/%d %H:%M:%S"))
        entries.append(
            {
                "path": check_path(name),
                "size": int(re.sub(r"[,.]", "", match["size"])),
                "sha256": None,
                "source_mtime_ns": int(stamp) * 1_000_000_000,
            }
        )
    _reject_duplicates(entries)
    return sorted(entries, key=lambda e: e["path"])


# --- manifest files ----------------------------------------------------------------------


def parse_manifest(text: str, origin: str = "manifest") -> dict:
    """Validate a manifest file's JSON; returns {version, source, revision, files}."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ManifestError(f"{origin}: not JSON: {err}") from err
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"{origin}: not a version {MANIFEST_VERSION} model_sync manifest")
    files = data.get("files")
    if not isinstance(files, list):
        raise ManifestError(f"{origin}: 'files' is not a list")
    entries = []
    for raw in files:
        if not isinstance(raw, dict):
            raise ManifestError(f"{origin}: file entry {raw!r} is not an object")
        entry = {"path": check_path(raw.get("path")), "size": raw.get("size")}
        if (
            not isinstance(entry["size"], int)
            or isinstance(entry["size"], bool)
            or entry["size"] < 0
        ):
            raise ManifestError(f"{origin}: {entry['path']}: size {entry['size']!r} is invalid")
        sha256 = raw.get("sha256")
        if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256)):
            raise ManifestError(f"{origin}: {entry['path']}: sha256 {sha256!r} is invalid")
        entry["sha256"] = sha256
        for key in ("git_sha1",):
            if raw.get(key) is not None:
                entry[key] = raw[key]
        for key in ("mtime_ns", "source_mtime_ns"):
            if raw.get(key) is not None:
                if not isinstance(raw[key], int):
                    raise ManifestError(f"{origin}: {entry['path']}: {key} is not an integer")
                entry[key] = raw[key]
        entries.append(entry)
    _reject_duplicates(entries, origin)
    return {
        "version": MANIFEST_VERSION,
        "source": str(data.get("source") or ""),
        "revision": str(data.get("revision") or ""),
        "files": sorted(entries, key=lambda e: e["path"]),
    }


def render_manifest(source: str, revision: str, entries: Iterable[Mapping[str, Any]]) -> str:
    """The manifest file's text: stable (sorted, no timestamps), so an unchanged model
    renders byte-identical and a re-run does not rewrite it."""
    files = []
    for entry in sorted(entries, key=lambda e: e["path"]):
        item = {"path": entry["path"], "size": entry["size"], "sha256": entry["sha256"]}
        for key in ("mtime_ns", "git_sha1", "source_mtime_ns"):
            if entry.get(key) is not None:
                item[key] = entry[key]
        files.append(item)
    document = {"version": MANIFEST_VERSION, "source": source, "revision": revision, "files": files}
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def _reject_duplicates(entries: list[dict], origin: str = "listing") -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry["path"] in seen:
            raise ManifestError(f"{origin}: {entry['path']} is listed twice")
        seen.add(entry["path"])
    # A file and a directory of the same name cannot both exist on disk.
    for path in seen:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in seen:
                raise ManifestError(
                    f"{origin}: {'/'.join(parts[:depth])} is a file and a directory"
                )


# --- planning ----------------------------------------------------------------------------


def same_content(desired: Mapping[str, Any], recorded: Mapping[str, Any]) -> bool:
    """Whether a recorded (verified) destination file is the desired file.

    By sha256 when the source publishes one, else by git blob id, else (a source without
    hashes) by the source file's size and mtime at the time it was copied.
    """
    if desired["size"] != recorded.get("size"):
        return False
    if desired.get("sha256"):
        return desired["sha256"] == recorded.get("sha256")
    if desired.get("git_sha1"):
        return desired["git_sha1"] == recorded.get("git_sha1")
    return desired.get("source_mtime_ns") is not None and desired.get(
        "source_mtime_ns"
    ) == recorded.get("source_mtime_ns")


def partial_key(entry: Mapping[str, Any]) -> str:
    """Name of the partial file for this source file inside the partial directory.

    The key covers the file's identity (path, size and hash or source mtime), so a partial
    left by an interrupted sync is resumed only by a sync of the same content; a partial of
    an older revision is discarded instead of being completed with newer bytes.
    """
    identity = "\x00".join(
        str(entry.get(key) or "")
        for key in ("path", "size", "sha256", "git_sha1", "source_mtime_ns")
    )
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def plan_sync(
    desired: list[Mapping[str, Any]],
    recorded: Mapping[str, Mapping[str, Any]],
    present: Mapping[str, tuple[int, int] | None],
    verify: str,
) -> dict:
    """Decide what to do with each file.

    desired:  the source's entries (already filtered by include/exclude).
    recorded: path -> entry from the destination's manifest (and the journal of an
              interrupted run), i.e. files that were verified when they were written.
    present:  path -> (size, mtime_ns) of the destination file, None when absent, for every
              desired and recorded path.
    verify:   ``fast`` trusts a recorded entry whose size and mtime still match the file;
              ``full`` sends those to ``rehash`` as well.

    Returns lists of entries (each with a ``reason``):
      keep      in place, nothing to do (fast verification)
      rehash    in place by size/mtime; hash it and compare (full verification)
      adopt     a file the manifest does not vouch for but whose size is right; hash it, keep
                it if the hash matches the source's, else transfer it
      transfer  missing or different: fetch it
      remove    recorded by an earlier sync, gone from the source, still on disk
    """
    if verify not in ("fast", "full"):
        raise ManifestError(f"verify must be one of: fast, full (got {verify!r})")
    plan: dict[str, list[dict]] = {k: [] for k in ("keep", "rehash", "adopt", "transfer", "remove")}
    desired_paths = set()
    for want in desired:
        path = want["path"]
        desired_paths.add(path)
        stat = present.get(path)
        record = recorded.get(path)
        item = dict(want)
        if stat is None:
            plan["transfer"].append(dict(item, reason="missing"))
            continue
        size, mtime_ns = stat
        if record is not None and same_content(want, record):
            if record.get("size") == size and record.get("mtime_ns") == mtime_ns:
                item.update(sha256=record.get("sha256"), mtime_ns=mtime_ns)
                if record.get("git_sha1"):
                    item["git_sha1"] = record["git_sha1"]
                if verify == "full":
                    plan["rehash"].append(dict(item, reason="verify: full"))
                else:
                    plan["keep"].append(dict(item, reason="size and mtime match the manifest"))
                continue
            reason = "size or mtime differ from the manifest"
        elif record is not None:
            reason = "the source has other content"
        else:
            reason = "not in the manifest"
        if size == want["size"] and (want.get("sha256") or want.get("git_sha1")):
            plan["adopt"].append(dict(item, reason=f"{reason}; size matches, hash to check"))
        elif size != want["size"]:
            plan["transfer"].append(dict(item, reason=f"{reason}; size {size} != {want['size']}"))
        else:
            plan["transfer"].append(dict(item, reason=reason))
    for path, record in sorted(recorded.items()):
        if path not in desired_paths and present.get(path) is not None:
            plan["remove"].append(dict(record, reason="no longer in the source"))
    return plan


def settle_hashes(plan: Mapping[str, list[dict]], hashes: Mapping[str, Mapping[str, Any]]) -> dict:
    """Fold the hashes of ``rehash`` and ``adopt`` files into the plan.

    hashes: path -> {sha256, git_sha1 (when the desired entry has one), mtime_ns}. A file
    whose hash matches goes to ``keep`` (``adopted`` for adopt), else to ``transfer``.
    """
    settled = {key: [dict(e) for e in plan.get(key, [])] for key in ("keep", "transfer", "remove")}
    settled["adopted"] = []
    settled["repaired"] = []
    for group in ("rehash", "adopt"):
        for entry in plan.get(group, []):
            got = hashes[entry["path"]]
            matches = (
                got.get("sha256") == entry["sha256"]
                if entry.get("sha256")
                else got.get("git_sha1") == entry.get("git_sha1")
            )
            if matches:
                kept = dict(entry, sha256=got["sha256"], mtime_ns=got["mtime_ns"])
                settled["keep"].append(kept)
                if group == "adopt":
                    settled["adopted"].append(kept)
            else:
                reason = "hash differs from the manifest" if group == "rehash" else entry["reason"]
                retry = dict(entry, reason=reason.replace("; size matches, hash to check", ""))
                retry.pop("mtime_ns", None)
                if group == "rehash":
                    settled["repaired"].append(retry)
                settled["transfer"].append(retry)
    settled["transfer"].sort(key=lambda e: e["path"])
    settled["keep"].sort(key=lambda e: e["path"])
    return settled


def bytes_to_fetch(transfer: Iterable[Mapping[str, Any]], partial_sizes: Mapping[str, int]) -> int:
    """Bytes still to write: each file's size less what a resumable partial already holds."""
    total = 0
    for entry in transfer:
        have = partial_sizes.get(entry["path"], 0)
        total += entry["size"] - have if 0 <= have <= entry["size"] else entry["size"]
    return total


def space_problem(
    free_bytes: int, needed_bytes: int, min_free_bytes: int, where: str
) -> str | None:
    """A message when writing ``needed_bytes`` would leave less than ``min_free_bytes`` free."""
    if needed_bytes <= 0:
        return None
    if free_bytes - needed_bytes >= min_free_bytes:
        return None
    return (
        f"not enough space on {where}: {human_bytes(needed_bytes)} still to write, "
        f"{human_bytes(free_bytes)} free, and {human_bytes(min_free_bytes)} must stay free "
        f"(short by {human_bytes(needed_bytes + min_free_bytes - free_bytes)}); nothing written"
    )


# --- reporting ---------------------------------------------------------------------------


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - loop always returns


def human_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_progress(progress: Mapping[str, Any]) -> str:
    """One line for the controller from a progress file written by the module.

    progress: {phase, bytes_done, bytes_total, files_done, files_total, elapsed, current, pid}
    (phase ``list`` while the source is listed, ``verify`` while files in place are hashed).
    The rate is the average since the transfer started (stable, unlike a last-interval rate).
    """
    phase = progress.get("phase", "transfer")
    done = int(progress.get("bytes_done", 0))
    total = int(progress.get("bytes_total", 0))
    elapsed = float(progress.get("elapsed", 0.0))
    files = f"{progress.get('files_done', 0)}/{progress.get('files_total', 0)} files"
    if phase == "list":
        return "listing the source"
    if phase != "transfer":
        return f"{phase}: {human_bytes(done)} / {human_bytes(total)}, {files}"
    percent = f" ({100.0 * done / total:.0f}%)" if total else ""
    line = f"{human_bytes(done)} / {human_bytes(total)}{percent}, {files}"
    if elapsed > 0 and done > 0:
        rate = done / elapsed
        line += f", {human_bytes(rate)}/s"
        if total > done:
            line += f", ETA {human_duration((total - done) / rate)}"
    current = progress.get("current") or []
    if current:
        shown = ", ".join(current[:2]) + (f" +{len(current) - 2}" if len(current) > 2 else "")
        line += f" [{shown}]"
    return line


def diff_lines(plan: Mapping[str, list[dict]]) -> tuple[str, str]:
    """Before/after text for --diff: the files a sync adds, replaces or removes."""
    before, after = [], []
    for entry in plan.get("transfer", []):
        label = entry.get("sha256") or entry.get("git_sha1") or "sha256 computed on copy"
        if entry.get("reason", "").startswith("missing"):
            after.append(f"+ {entry['path']} ({entry['size']} bytes, {label})")
        else:
            before.append(f"~ {entry['path']} ({entry['reason']})")
            after.append(f"~ {entry['path']} ({entry['size']} bytes, {label})")
    for entry in plan.get("remove", []):
        before.append(f"- {entry['path']} ({entry['size']} bytes)")
    return "".join(f"{line}\n" for line in before), "".join(f"{line}\n" for line in after)
