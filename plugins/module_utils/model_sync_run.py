"""One model sync from start to end, for the model_sync module.

Private to llmops.gpu_serving; no stability promise outside this collection.

    list the source -> plan against the destination's manifest and a stat() of each file ->
    hash what must be checked (verify: full, files without a manifest entry) -> check free
    space -> (stop here in check mode) -> fetch into partial files, hashing as bytes stream ->
    verify and rename each -> remove files the source dropped -> fix owner/mode -> write the
    manifest, last and atomically -> remove the partial area.

Nothing is written before the space check, and nothing at all in check mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import posixpath
import shutil
import stat
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (
    ManifestError,
    bytes_to_fetch,
    diff_lines,
    parse_manifest,
    parse_source,
    plan_sync,
    render_manifest,
    select_paths,
    settle_hashes,
    space_problem,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_sources import (
    SourceChanged,
    SourceError,
    make_source,
    manifest_entries,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_transfer import (
    DIR_MODE,
    FILE_MODE,
    Destination,
    HashingWriter,
    Ownership,
    Progress,
    TransferError,
    hash_files,
    refuse_links,
)

# Network sources are latency-bound: several files in flight; disks and hashing scale with
# cores.
NETWORK_WORKERS = 8
# Copies of a file that keeps changing while it is read, before the sync gives up on it.
SOURCE_CHANGED_ATTEMPTS = 3


# Directories the system owns. A model base is model_sync's to own, fill and empty: never one of
# these (the role gives a base it creates to the model user; state absent removes below it).
SYSTEM_DIRS = frozenset(
    {"/", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib"}
    | {"/var/tmp", "/var/log", "/var/cache"}
)
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run")
SYSTEM_TREES += ("/sbin", "/sys", "/usr")


def base_dir_problem(base_dir: str) -> str | None:
    """Why ``base_dir`` cannot be a model base directory, or None."""
    path = posixpath.normpath(base_dir)
    if path in SYSTEM_DIRS or any(path == t or path.startswith(t + "/") for t in SYSTEM_TREES):
        return "a directory of its own for the models, such as /home/llm/model, not a system one"
    return None


class SyncError(Exception):
    """A sync that cannot start or did not finish; ``result`` holds what is known so far."""

    def __init__(self, message: str, result: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.result = dict(result or {})


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def _parent_dirs(paths: list[str]) -> set[str]:
    dirs = {""}
    for path in paths:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:depth]))
    return dirs


def sync_model(
    options: Mapping[str, Any],
    check_mode: bool,
    owner: Ownership,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict:
    """Run the sync; returns the module result. Raises SyncError."""
    root = options["dest"]
    result: dict[str, Any] = {
        "changed": False,
        "dest": root,
        "source": options["source"],
        "manifest": os.path.join(root, ".llmops-manifest.json"),
    }
    check_destination(root, options.get("base_dir") or "", result)
    try:
        return _sync_model(options, check_mode, owner, log, result)
    except OSError as err:
        raise SyncError(describe_os_error(err), result) from err


def describe_os_error(err: OSError) -> str:
    """A short message for a file-system error: the path, what went wrong, and for a refused
    access who the module runs as."""
    where = f"{err.filename}: " if err.filename else ""
    text = f"{where}{err.strerror or err}"
    if isinstance(err, PermissionError):
        text += (
            f" (model_sync runs as uid {os.geteuid()}; run it as root, become: true, or give "
            "that user write access)"
        )
    return text


def _inside(path: str, base: str) -> bool:
    return path != base and path.startswith(base.rstrip("/") + "/")


def check_destination(root: str, base_dir: str, result: Mapping[str, Any]) -> None:
    """Refuse, before reading the source, a dest that cannot be a model directory: a path
    through a regular file, or one outside ``base_dir`` when that is given. Symbolic links are
    resolved first, so a link cannot lead the sync (and its chown) out of the base."""
    if base_dir:
        real_root, real_base = os.path.realpath(root), os.path.realpath(base_dir)
        problem = base_dir_problem(real_base)
        if problem:
            resolved = (
                f" (resolves to {real_base})" if real_base != os.path.normpath(base_dir) else ""
            )
            raise SyncError(f"base_dir {base_dir}{resolved} must be {problem}", result)
        if not _inside(real_root, real_base):
            resolved = f" (resolves to {real_root})" if real_root != os.path.normpath(root) else ""
            raise SyncError(
                f"dest {root}{resolved} is not inside the model base directory {base_dir}; "
                "model_sync only writes to, changes owners in and removes directories below it",
                result,
            )
    probe = root
    while probe != os.path.dirname(probe):
        if os.path.lexists(probe):
            if not os.path.isdir(probe):
                what = "dest" if probe == root else f"{probe}, a parent of dest,"
                raise SyncError(
                    f"{what} exists and is not a directory; dest must be a directory (got {root})",
                    result,
                )
            break
        probe = os.path.dirname(probe)


def _check_overlap(source_root: str, root: str, result: Mapping[str, Any]) -> None:
    real_source, real_root = os.path.realpath(source_root), os.path.realpath(root)
    if real_source == real_root or _inside(real_root, real_source):
        raise SyncError(
            f"dest {root} is the source directory or inside it ({source_root}): the copy would "
            "copy itself; choose a dest outside the source",
            result,
        )
    if _inside(real_source, real_root):
        raise SyncError(
            f"the source {source_root} is inside dest {root}; choose a dest outside the source",
            result,
        )


def _sync_model(
    options: Mapping[str, Any],
    check_mode: bool,
    owner: Ownership,
    log: Callable[[str], None],
    result: dict,
) -> dict:
    started = time.monotonic()
    root = options["dest"]
    # First thing: the controller learns the pid to watch while the source is listed.
    Progress(options.get("progress_file"), 0, 0, "list").flush()
    try:
        spec = parse_source(options["source"], options.get("revision") or "")
        if spec["kind"] == "local":
            _check_overlap(spec["path"], root, result)
        source = make_source(spec, options)
        if options.get("source_manifest"):
            given = parse_manifest(json.dumps(options["source_manifest"]), "source_manifest")
            revision, desired = given["revision"], manifest_entries(given, "source_manifest")
        else:
            revision, desired = source.listing()
    except (ManifestError, SourceError) as err:
        raise SyncError(str(err), result) from err
    result["revision"] = revision
    desired = select_paths(desired, options.get("include") or [], options.get("exclude") or [])
    if not desired:
        raise SyncError(f"the source {options['source']} lists no files to sync", result)

    dest = Destination(root, owner)
    old_manifest = dest.read_manifest()
    recorded = {e["path"]: e for e in (old_manifest["files"] if old_manifest else [])}
    recorded.update(dest.read_journal())
    stats = {path: dest.stat(path) for path in {e["path"] for e in desired} | set(recorded)}
    present = {p: (s.st_size, s.st_mtime_ns) if s else None for p, s in stats.items()}
    plan = plan_sync(desired, recorded, present, options["verify"])
    if options.get("defer_long_work") and (plan["rehash"] or plan["adopt"] or plan["transfer"]):
        # Bytes to read or fetch: the action plugin runs this again asynchronously, with
        # progress. Nothing was written; a model in place is finished by this run instead.
        result.update(deferred=True, files_total=len(desired))
        return result

    workers = options.get("workers") or os.cpu_count() or 1
    to_hash = plan["rehash"] + plan["adopt"]
    hashing = Progress(
        options.get("progress_file"), len(to_hash), sum(e["size"] for e in to_hash), "verify"
    )
    hashes: dict[str, dict] = {}
    if to_hash:
        try:
            hashes = hash_files(
                (
                    (
                        e["path"],
                        dest.path(e["path"]),
                        bool(e.get("git_sha1") and not e.get("sha256")),
                    )
                    for e in to_hash
                ),
                workers,
                hashing.add,
            )
        except OSError as err:
            raise SyncError(f"cannot hash a file in {root}: {err}", result) from err
    settled = settle_hashes(plan, hashes)
    transfer, remove, keep = settled["transfer"], settled["remove"], settled["keep"]

    partial_sizes = dest.partial_sizes(transfer)
    needed = bytes_to_fetch(transfer, partial_sizes)
    where = _existing_ancestor(root)
    free = shutil.disk_usage(where).free
    result.update(
        files_total=len(desired),
        bytes_total=sum(e["size"] for e in desired),
        files_verified=len(to_hash),
        files_adopted=len(settled["adopted"]),
        files_repaired=len(settled["repaired"]),
        files_to_transfer=len(transfer),
        bytes_to_transfer=needed,
        transfer=[e["path"] for e in transfer],
        remove=[e["path"] for e in remove],
    )
    problem = space_problem(free, needed, options.get("min_free_bytes") or 0, where)
    if problem:
        raise SyncError(problem, result)

    attr_files = [
        e["path"]
        for e in keep
        if stats.get(e["path"])
        and (owner.differs(stats[e["path"]]) or stat.S_IMODE(stats[e["path"]].st_mode) != FILE_MODE)
    ]
    # Existing directories get the owner and mode of a model directory only below the model
    # base (checked above). Without a base, only the directories this run creates do: never an
    # existing directory given as dest (``/srv``, ``/etc``), whose attributes are kept.
    managed = bool(options.get("base_dir")) or not os.path.isdir(root)
    model_dirs = _parent_dirs([e["path"] for e in desired]) if managed else set()
    attr_dirs = []
    for relative in sorted(model_dirs):
        # A directory of the model that is a link fails here, in check mode too, naming it.
        refuse_links(root, relative, include_last=True)
        try:
            info = os.lstat(dest.path(relative) if relative else root)
        except OSError:
            continue
        if owner.differs(info) or stat.S_IMODE(info.st_mode) != DIR_MODE:
            attr_dirs.append(relative)
    old_text = _read_text(dest.manifest_path)
    keep_text = render_manifest(options["source"], revision, keep)
    # A partial area left by an interrupted run whose files all made it since.
    leftover = os.path.isdir(dest.partial_dir)
    changed = bool(
        transfer or remove or attr_files or attr_dirs or old_text != keep_text or leftover
    )
    before, after = diff_lines(settled)
    result.update(
        changed=changed,
        diff={
            "before_header": f"{root} (files that change)",
            "after_header": f"{root} (after the sync)",
            "before": before,
            "after": after,
        },
    )
    if check_mode or not changed:
        _finish(result, started, files=0, transferred=0, resumed=0, seconds=0.0)
        return result

    dest.make_dirs("")
    lock = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise SyncError(f"another model_sync is writing to {root}", result) from err
        placed: list[dict] = []
        transferred = resumed = 0
        transfer_seconds = 0.0

        def finish() -> None:
            # The figures of the transfer so far, read when it ends (or fails).
            _finish(
                result,
                started,
                files=len(placed),
                transferred=transferred,
                resumed=resumed,
                seconds=transfer_seconds,
            )

        if transfer:
            dest.open_partial_area()
            log(f"fetching {len(transfer)} files ({needed} bytes) from {options['source']}")
            transfer_started = time.monotonic()
            placed, transferred, resumed, errors = _transfer(
                source, dest, transfer, needed, options=options, workers=workers
            )
            transfer_seconds = time.monotonic() - transfer_started
            if errors:
                finish()
                raise SyncError(
                    f"{len(errors)} of {len(transfer)} files did not sync: "
                    + "; ".join(errors[:5])
                    + ". Files already verified are in place; the next run resumes the rest.",
                    result,
                )
        for entry in remove:
            dest.remove(entry["path"])
        for path in attr_files:
            dest.fix_attributes(path)
        dest.fix_dir_attributes(model_dirs)
        text = render_manifest(options["source"], revision, keep + placed)
        if text != old_text:
            dest.write_manifest(text)
        dest.close_partial_area()
    finally:
        os.close(lock)
    finish()
    return result


def _finish(
    result: dict, started: float, *, files: int, transferred: int, resumed: int, seconds: float
) -> None:
    result.update(
        files_transferred=files,
        bytes_transferred=transferred,
        bytes_resumed=resumed,
        seconds=round(time.monotonic() - started, 3),
        throughput=round(transferred / seconds, 1) if seconds > 0 else 0.0,
    )


def _transfer(
    source: Any,
    dest: Destination,
    transfer: list[dict],
    needed: int,
    *,
    options: Mapping[str, Any],
    workers: int,
) -> tuple[list[dict], int, int, list[str]]:
    """Fetch, verify and place every file of ``transfer``.

    Returns (placed entries, bytes fetched, bytes resumed from partials, error messages).
    A file that fails verification is fetched once more from scratch before it counts as an
    error; any other failure leaves its partial file for the next run to resume.
    """
    progress = Progress(options.get("progress_file"), len(transfer), needed, "transfer")
    # Workers add to it concurrently: ``total += writer.resume()`` would read the total before
    # the (long) resume and store a stale sum, losing a concurrent worker's bytes.
    resumed_lock = threading.Lock()
    resumed_total = [0]

    def git_size(entry: Mapping[str, Any]) -> int | None:
        return entry["size"] if entry.get("git_sha1") and not entry.get("sha256") else None

    staged_by_source = getattr(source, "stages", None)

    def fetch_one(entry: dict) -> dict:
        progress.begin(entry["path"])
        try:
            if staged_by_source is not None and staged_by_source(entry):
                return download_staged(entry)
            verify_failures = torn = 0
            while True:
                with HashingWriter(dest.partial_path(entry), git_size(entry)) as writer:
                    resumed = writer.resume(entry["size"])
                    with resumed_lock:
                        resumed_total[0] += resumed
                    writer.on_bytes = progress.add
                    try:
                        mtime_ns = source.fetch(entry, writer)
                    except SourceChanged:
                        # The partial holds bytes of two versions: never resume it.
                        writer.close()
                        os.unlink(writer.path)
                        torn += 1
                        if torn >= SOURCE_CHANGED_ATTEMPTS:
                            raise
                        continue
                    try:
                        return dest.place(writer, entry, mtime_ns)
                    except TransferError:
                        verify_failures += 1
                        if verify_failures >= 2:
                            raise
        finally:
            progress.end(entry["path"])

    def download_staged(entry: dict) -> dict:
        """A file the source writes itself (the Hub's Xet storage through hf_hub_download):
        hashed once, right after, and placed only if it matches the listed sha256."""
        staging = os.path.join(dest.partial_dir, source.kind)
        for attempt in (1, 2):
            landed = source.download(entry, staging)
            progress.add(entry["size"])
            with HashingWriter(landed, git_size(entry)) as writer:
                writer.resume(entry["size"])
                try:
                    return dest.place(writer, entry, None)
                except TransferError:
                    if attempt == 2:
                        raise
        raise AssertionError("not reached")  # pragma: no cover

    def place_staged(entry: dict, staging: str) -> dict:
        staged = os.path.join(staging, *entry["path"].split("/"))
        with HashingWriter(staged, git_size(entry)) as writer:
            writer.resume(entry["size"])
            placed = dest.place(writer, entry, entry.get("source_mtime_ns"))
        progress.end(entry["path"])
        return placed

    placed: list[dict] = []
    errors: list[str] = []
    prepare = getattr(source, "prepare", None)
    if prepare is not None:
        try:
            prepare(transfer)
        except SourceError as err:
            return placed, 0, 0, [str(err)]
    if source.parallel:
        count = workers if source.kind == "local" else max(workers, NETWORK_WORKERS)
        with ThreadPoolExecutor(max_workers=max(1, min(count, len(transfer)))) as pool:
            futures = [(e, pool.submit(fetch_one, e)) for e in transfer]
            for entry, future in futures:
                try:
                    placed.append(future.result())
                except (TransferError, SourceError, OSError) as err:
                    errors.append(
                        str(err) if entry["path"] in str(err) else f"{entry['path']}: {err}"
                    )
    else:
        staging = os.path.join(dest.partial_dir, "rsync")
        pending = list(transfer)
        for attempt in (1, 2):
            try:
                landed = source.fetch_all(pending, staging, progress.add)
            except (TransferError, SourceError) as err:
                errors.append(str(err))
                break
            failed = []
            with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pending)))) as pool:
                futures = [(e, pool.submit(place_staged, e, landed)) for e in pending]
                for entry, future in futures:
                    try:
                        placed.append(future.result())
                    except TransferError as err:
                        if attempt == 2:
                            errors.append(str(err))
                        failed.append(entry)
            if not failed:
                break
            pending = failed
    progress.flush()
    return placed, progress.bytes_done, resumed_total[0], errors


def remove_model(options: Mapping[str, Any], check_mode: bool) -> dict:
    """``state: absent``: remove what model_sync wrote in dest, nothing else.

    That is the files its manifest (and the journal of an interrupted run) records, when they
    are still the recorded regular files (same size and mtime), the partial area and the
    manifest; then the directories this left empty, dest included. Files it never wrote, or
    that were changed since, stay (listed in ``kept``) and so does their directory. A dest
    without a manifest or partial area is not a model_sync directory: nothing is removed.
    """
    root = options["dest"]
    result: dict[str, Any] = {"changed": False, "dest": root, "removed": [], "kept": []}
    check_destination(root, options.get("base_dir") or "", result)
    if not os.path.isdir(root):
        return result
    dest = Destination(root, Ownership())
    try:
        manifest = dest.read_manifest()
        recorded = {e["path"]: e for e in (manifest["files"] if manifest else [])}
        recorded.update(dest.read_journal())
        has_partials = os.path.isdir(dest.partial_dir)
        if manifest is None and not recorded and not has_partials:
            if os.path.exists(dest.manifest_path):
                result["kept"].append(os.path.basename(dest.manifest_path))
            return result
        removable = []
        for path, entry in sorted(recorded.items()):
            full = dest.path(path)
            try:
                refuse_links(root, path, include_last=False)
                info = os.lstat(full)
            except FileNotFoundError:
                continue
            except OSError:
                # Below a link: not what model_sync wrote, whatever it points at.
                result["kept"].append(path)
                continue
            if (
                stat.S_ISREG(info.st_mode)
                and info.st_size == entry["size"]
                and entry.get("mtime_ns") in (None, info.st_mtime_ns)
            ):
                removable.append(path)
            else:
                result["kept"].append(path)
        result["removed"] = removable
        result["changed"] = True
        if check_mode:
            return result
        lock = os.open(root, os.O_RDONLY)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                raise SyncError(f"a model_sync is writing to {root}", result) from err
            for path in removable:
                dest.remove(path)
            dest.close_partial_area()
            if os.path.exists(dest.manifest_path):
                os.unlink(dest.manifest_path)
        finally:
            os.close(lock)
        with contextlib.suppress(OSError):  # files model_sync did not write are still there
            os.rmdir(root)
    except OSError as err:
        raise SyncError(describe_os_error(err), result) from err
    return result
