"""Where model_sync reads a model from: a directory, the Hugging Face Hub, rsync, an HTTP mirror.

Private to llmops.gpu_serving; no stability promise outside this collection.

Each source answers two questions: what the model is (``listing``: the commit or revision and
one entry per file, with sha256 where the source publishes it) and how to get a file's bytes
into a HashingWriter (``fetch``), resuming at ``writer.position``. The Hub and HTTP sources
stream straight into the writer, so bytes are hashed as they arrive; rsync writes its own
files, which are hashed once it is done (from the page cache it just filled).
"""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (
    MANIFEST_NAME,
    RESERVED_NAMES,
    ManifestError,
    check_path,
    manifest_from_hub_info,
    parse_manifest,
    parse_rsync_listing,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_transfer import (
    COPY_BUFFER_BYTES,
    HashingWriter,
    TransferError,
    copy_into,
)

# rsync's exit code when some files could not be transferred, e.g. a missing manifest.
RSYNC_PARTIAL_TRANSFER = 23


class SourceError(Exception):
    """The source cannot be listed or read (unreachable, refused, missing client)."""


class SourceChanged(TransferError):
    """A source file changed while it was copied: the copy is torn, fetch it again."""


# Opening files for reading goes through here, so tests can count what is read (every source
# byte once on a first sync).
_open = open


def manifest_entries(manifest: Mapping[str, Any], origin: str = "manifest") -> list[dict]:
    """The source side of a parsed manifest: drop the mtimes of the host that wrote it.

    Every entry must carry a sha256: model_sync writes one for every file it placed, so an
    entry without one is not a verified copy (a hand-written or truncated manifest) and a file
    fetched against it could not be checked. Raises ManifestError.
    """
    entries = []
    for entry in manifest["files"]:
        if not entry.get("sha256"):
            raise ManifestError(
                f"{origin}: {entry['path']} has no sha256; a source manifest must list the "
                "sha256 of every file (model_sync writes one for each file it verified)"
            )
        entries.append({"path": entry["path"], "size": entry["size"], "sha256": entry["sha256"]})
    return entries


class LocalSource:
    """A directory on the target host: an NFS share, a pre-staged disk, a Hub cache snapshot.

    When the directory holds a model_sync manifest (it is itself a synced model) its sha256s
    are the expected values; otherwise files are identified by size and mtime and their sha256
    is computed while they are copied. Symbolic links are followed (a Hub cache snapshot is
    a tree of links into its blob store).
    """

    kind = "local"
    parallel = True

    def __init__(self, root: str):
        self.root = root

    def listing(self) -> tuple[str, list[dict]]:
        if not os.path.isdir(self.root):
            raise SourceError(f"source directory {self.root} does not exist on the host")
        manifest_path = os.path.join(self.root, MANIFEST_NAME)
        if os.path.exists(manifest_path):
            with open(manifest_path, encoding="utf-8") as handle:
                manifest = parse_manifest(handle.read(), manifest_path)
            return manifest["revision"], manifest_entries(manifest, manifest_path)
        return "", self._walk()

    def _walk(self) -> list[dict]:
        entries = []
        seen_dirs: set[tuple[int, int]] = set()

        def unreadable(err: OSError) -> None:
            # os.walk skips what it cannot read: a model silently missing files.
            raise SourceError(f"cannot list the source: {err.filename}: {err.strerror}") from err

        for directory, dirnames, filenames in os.walk(
            self.root, onerror=unreadable, followlinks=True
        ):
            info = os.stat(directory)
            if (info.st_dev, info.st_ino) in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add((info.st_dev, info.st_ino))
            relative_dir = os.path.relpath(directory, self.root)
            prefix = "" if relative_dir == "." else relative_dir.replace(os.sep, "/") + "/"
            if not prefix:
                dirnames[:] = [d for d in dirnames if d not in RESERVED_NAMES]
            dirnames.sort()
            for name in sorted(filenames):
                if not prefix and name in RESERVED_NAMES:
                    continue
                try:
                    file_info = os.stat(os.path.join(directory, name))
                except FileNotFoundError:
                    continue  # a dangling link
                if not stat.S_ISREG(file_info.st_mode):
                    continue
                entries.append(
                    {
                        "path": check_path(prefix + name),
                        "size": file_info.st_size,
                        "sha256": None,
                        "source_mtime_ns": file_info.st_mtime_ns,
                    }
                )
        return entries

    def fetch(self, entry: Mapping[str, Any], writer: HashingWriter) -> int | None:
        """Copy one file, hashing as it goes; raise SourceChanged when the file is rewritten,
        replaced or truncated while it is read (its bytes would match neither version)."""
        path = os.path.join(self.root, *entry["path"].split("/"))
        with _open(path, "rb", buffering=0) as handle:
            before = os.fstat(handle.fileno())
            if before.st_size != entry["size"]:
                raise SourceChanged(
                    f"{entry['path']}: the source file changed size since it was listed "
                    f"({before.st_size} bytes, listed {entry['size']})"
                )
            listed_mtime = entry.get("source_mtime_ns")
            if (
                writer.position
                and not entry.get("sha256")
                and listed_mtime not in (None, before.st_mtime_ns)
            ):
                # A partial of the listed version must not be completed with newer bytes; with
                # no sha256 to check the result against, start this file over.
                writer.truncate(0)
            handle.seek(writer.position)
            copy_into(handle, writer)
            after = os.fstat(handle.fileno())
        try:
            now = os.stat(path)
        except OSError as err:
            raise SourceChanged(f"{entry['path']}: the source file went away while read") from err
        if _identity(before) != _identity(after) or _identity(before) != _identity(now):
            raise SourceChanged(
                f"{entry['path']}: the source file was modified or replaced while it was read "
                "(size, mtime, ctime or inode changed)"
            )
        if not entry.get("sha256") and listed_mtime not in (None, before.st_mtime_ns):
            # Same size, newer content, read consistently: record what was actually copied.
            entry["source_mtime_ns"] = before.st_mtime_ns
        # Keep the source's mtime, as cp -p and rsync -t do.
        return before.st_mtime_ns


def _identity(info: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is written to, truncated or replaced by a rename."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class HttpSource:
    """An HTTP(S) mirror: ``<base>/.llmops-manifest.json`` lists the files, ``<base>/<path>``
    serves each; a partial file resumes with a Range request. Any web server that serves a
    directory synced by model_sync is such a mirror, and so is the model_sync role's fan-out
    server on the source host (roles/model_sync/files/model_fanout_server.py), which wants
    ``token`` as ``Authorization: Bearer``."""

    kind = "http"
    parallel = True

    def __init__(self, base_url: str, timeout: int, token: str = ""):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{urllib.parse.quote(path)}"

    def _request(self, url: str) -> urllib.request.Request:
        request = urllib.request.Request(url)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        return request

    def listing(self) -> tuple[str, list[dict]]:
        url = self._url(MANIFEST_NAME)
        try:
            with urllib.request.urlopen(self._request(url), timeout=self.timeout) as response:
                text = response.read().decode("utf-8")
        except (urllib.error.URLError, OSError) as err:
            raise SourceError(f"cannot read the mirror's manifest {url}: {err}") from err
        manifest = parse_manifest(text, url)
        return manifest["revision"], manifest_entries(manifest, url)

    def fetch(self, entry: Mapping[str, Any], writer: HashingWriter) -> int | None:
        url = self._url(entry["path"])
        request = self._request(url)
        if writer.position:
            request.add_header("Range", f"bytes={writer.position}-")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if writer.position and response.status == 206:
                    start = _content_range_start(response.headers.get("Content-Range", ""))
                    if start != writer.position:
                        raise TransferError(
                            f"{url}: asked for bytes from {writer.position}, got {start}"
                        )
                elif writer.position:
                    writer.truncate(0)  # the server ignored Range: start over
                buffer = bytearray(COPY_BUFFER_BYTES)
                view = memoryview(buffer)
                while True:
                    got = response.readinto(view)
                    if not got:
                        break
                    writer.write(view[:got])
        except urllib.error.HTTPError as err:
            raise TransferError(f"{url}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, OSError) as err:
            raise TransferError(f"{url}: {err}") from err
        return None


def _content_range_start(header: str) -> int | None:
    # "bytes 1000-1999/5000"
    try:
        return int(header.split()[1].split("-", maxsplit=1)[0])
    except (IndexError, ValueError):
        return None


class RsyncSource:
    """Another host through rsync: ``rsync://[user@]host[:port]/module/path`` (an rsync daemon,
    password from ``password``) or ``[user@]host:/path`` (over SSH, keys only: BatchMode).

    The source's manifest is fetched first; a source without one is listed with
    ``--list-only`` and identified by size and mtime. Files are fetched by one rsync run into
    ``<dest>/.llmops-partial/rsync/`` with ``--partial --append-verify`` (an interrupted file
    resumes and rsync checks the whole file), then hashed and verified like any other source
    before they get their final names.
    """

    kind = "rsync"
    parallel = False

    def __init__(self, url: str, password: str, timeout: int):
        self.url = url
        self.timeout = timeout
        self.env = dict(os.environ)
        if password:
            self.env["RSYNC_PASSWORD"] = password

    def _command(self, *args: str) -> list[str]:
        command = ["rsync", f"--timeout={self.timeout}"]
        if not self.url.startswith("rsync://"):
            # Over SSH: keys only, a password prompt would hang the run. (With rsync:// an -e
            # option would mean "daemon over SSH", so none is given.)
            command += ["-e", "ssh -o BatchMode=yes"]
        return [*command, *args]

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                self._command(*args), env=self.env, capture_output=True, text=True, check=False
            )
        except FileNotFoundError as err:
            raise SourceError("rsync is not installed on the host") from err

    def listing(self) -> tuple[str, list[dict]]:
        with tempfile.TemporaryDirectory(prefix="llmops-model-sync-") as scratch:
            target = os.path.join(scratch, "manifest.json")
            result = self._run(f"{self.url}/{MANIFEST_NAME}", target)
            if result.returncode == 0:
                with open(target, encoding="utf-8") as handle:
                    origin = f"{self.url}/{MANIFEST_NAME}"
                    manifest = parse_manifest(handle.read(), origin)
                return manifest["revision"], manifest_entries(manifest, origin)
        if result.returncode != RSYNC_PARTIAL_TRANSFER:
            raise SourceError(f"rsync {self.url}: {_tail(result.stderr)}")
        listed = self._run("-r", "-L", "--list-only", "--no-h", f"{self.url}/")
        if listed.returncode != 0:
            raise SourceError(f"rsync --list-only {self.url}: {_tail(listed.stderr)}")
        try:
            return "", parse_rsync_listing(listed.stdout)
        except ManifestError as err:
            raise SourceError(str(err)) from err

    def _transfer_root(self) -> tuple[str, str]:
        """(rsync source root, prefix of the model inside it).

        For a daemon URL the root is the module itself: an rsync daemon resolves a
        --files-from list against a path below the module as if the files had vanished
        (rsync 3.5), so the list names module-relative paths instead.
        """
        if not self.url.startswith("rsync://"):
            return self.url, ""
        host_and_path = self.url[len("rsync://") :]
        host, _, path = host_and_path.partition("/")
        module, _, prefix = path.partition("/")
        return f"rsync://{host}/{module}", prefix.strip("/")

    def fetch_all(
        self, entries: list[Mapping[str, Any]], staging: str, on_bytes: Callable[[int], None]
    ) -> str:
        """One rsync run for every file; progress from the growing staging files. Returns the
        directory under ``staging`` where the files landed (their relative paths below it)."""
        os.makedirs(staging, mode=0o700, exist_ok=True)
        root, prefix = self._transfer_root()
        landed = os.path.join(staging, *prefix.split("/")) if prefix else staging
        names = [f"{prefix}/{e['path']}" if prefix else e["path"] for e in entries]
        list_path = os.path.join(staging, "..", "rsync-files")
        with open(list_path, "wb") as handle:
            handle.write(b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names))
        paths = [os.path.join(landed, *e["path"].split("/")) for e in entries]
        before = _sizes(paths)
        command = self._command(
            "-L",
            "-t",
            "--partial",
            "--append-verify",
            "--chmod=F600",
            "--from0",
            f"--files-from={list_path}",
            f"{root}/",
            f"{staging}/",
        )
        stop = threading.Event()
        counted = [before]

        def watch() -> None:
            while not stop.wait(1.0):
                now = _sizes(paths)
                on_bytes(max(0, now - counted[0]))
                counted[0] = max(now, counted[0])

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            result = subprocess.run(
                command, env=self.env, capture_output=True, text=True, check=False
            )
        except FileNotFoundError as err:
            raise SourceError("rsync is not installed on the host") from err
        finally:
            stop.set()
            watcher.join()
        on_bytes(max(0, _sizes(paths) - counted[0]))
        if result.returncode != 0:
            raise TransferError(f"rsync from {self.url} failed: {_tail(result.stderr)}")
        return landed


def _sizes(paths: list[str]) -> int:
    total = 0
    for path in paths:
        try:
            total += os.stat(path).st_size
        except OSError:
            continue
    return total


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no error output"


class HubSource:
    """The Hugging Face Hub (or a mirror of it) through huggingface_hub's public API.

    The module must run with a Python that can import huggingface_hub (the role installs it
    into a virtualenv and points ansible_python_interpreter at it for this task).

    - Listing: ``HfApi.model_info(files_metadata=True)`` gives the commit the revision (branch,
      tag or commit) resolves to and every file's size and sha256 (``lfs.sha256``) or git blob
      id; a gated repository is checked with ``HfApi.auth_check`` before anything is written,
      so a refusal carries the Hub's own reason.
    - Files: from ``hf_hub_url(..., revision=<commit>)``, so every file comes from one commit
      even if the branch moves during the sync, through the client's HTTP session
      (``get_session``, ``build_hf_headers``, ``hf_raise_for_status``): the bytes stream into
      the HashingWriter (hashed as they arrive) and a partial resumes with a Range request.
    - Xet-backed files, when hf_xet is installed: ``hf_hub_download`` (which uses hf_xet
      itself) into the partial area, then hashed once and checked against the Hub's sha256
      right after, before they get their final names (``staged`` entries).
    - ``timeout`` bounds every request: seconds without an answer or a byte.
    """

    kind = "hf"
    parallel = True
    # Transient failures of one response, resumed from the bytes already written.
    ATTEMPTS = 3
    RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

    def __init__(self, repo_id: str, revision: str, token: str, endpoint: str, timeout: int = 60):
        self.repo_id = repo_id
        self.revision = revision
        self.token = token or None
        self.endpoint = endpoint.rstrip("/") or None
        self.timeout = timeout
        self.commit = ""
        self.xet_paths: set[str] = set()
        # Our own progress replaces tqdm's bars; telemetry off on servers.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        # The client reads these when it is imported (huggingface_hub/constants.py); they bound
        # what hf_hub_download does for Xet files, our own requests pass the timeout themselves.
        os.environ["HF_HUB_ETAG_TIMEOUT"] = str(timeout)
        os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = str(timeout)
        if self.endpoint:
            os.environ["HF_ENDPOINT"] = self.endpoint
        try:
            import huggingface_hub  # noqa: F401, PLC0415 - optional, only for hf:// sources
        except ImportError as err:
            raise SourceError(
                "hf:// sources need the huggingface_hub client, which the Python running this "
                f"module cannot import ({err}); run the task with ansible_python_interpreter "
                "pointing at a virtualenv that has it (the model_sync role installs one)"
            ) from err

    def _api(self) -> Any:
        from huggingface_hub import HfApi  # noqa: PLC0415

        return HfApi(endpoint=self.endpoint, token=self.token)

    def _refusal(self, err: Exception) -> str:
        """The Hub's own words for a refused request, with what to do about it."""
        from huggingface_hub.errors import (  # noqa: PLC0415
            GatedRepoError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        where = f"hf://{self.repo_id}"
        reason = getattr(err, "server_message", None) or str(err).strip().splitlines()[0]
        if isinstance(err, GatedRepoError):
            return (
                f"{where} is a gated repository and the Hub refused access: {reason} "
                "(accept its conditions on the model's page, then set hf_token / "
                "model_sync_hf_token to a token of that account)"
            )
        if isinstance(err, RevisionNotFoundError):
            return f"{where}: revision {self.revision!r} not found: {reason}"
        if isinstance(err, RepositoryNotFoundError):
            return (
                f"{where}: repository not found (or private without a token that may read it): "
                f"{reason}"
            )
        return f"{where}@{self.revision or 'default branch'}: {type(err).__name__}: {reason}"

    def listing(self) -> tuple[str, list[dict]]:
        api = self._api()
        try:
            info = api.model_info(
                self.repo_id,
                revision=self.revision or None,
                files_metadata=True,
                timeout=self.timeout,
            )
            if getattr(info, "gated", False):
                # Metadata of a gated repository is public, its files are not: ask now, before
                # anything is written, rather than fail every download.
                api.auth_check(self.repo_id, token=self.token)
        except Exception as err:  # the client raises many types (HTTP, network, gated, ...)
            raise SourceError(self._refusal(err)) from err
        raw = {
            "sha": info.sha,
            "siblings": [
                {
                    "rfilename": sibling.rfilename,
                    "size": sibling.size,
                    "blobId": sibling.blob_id,
                    "lfs": (
                        {"size": sibling.lfs.size, "sha256": sibling.lfs.sha256}
                        if sibling.lfs
                        else None
                    ),
                }
                for sibling in (info.siblings or [])
            ],
        }
        try:
            self.commit, entries = manifest_from_hub_info(raw)
        except ManifestError as err:
            raise SourceError(f"Hub listing of {self.repo_id}: {err}") from err
        return self.commit, entries

    def prepare(self, entries: list[Mapping[str, Any]]) -> None:
        """Find the Xet-backed files among those to fetch (one paths-info request), when hf_xet
        is installed: hf_hub_download fetches those through it."""
        wanted = [e["path"] for e in entries if e.get("sha256")]
        if not wanted or not xet_available():
            return
        if not self.commit:
            raise SourceError("Hub: files requested before the repository was listed")
        try:
            infos = self._api().get_paths_info(self.repo_id, wanted, revision=self.commit)
        except Exception as err:
            raise SourceError(self._refusal(err)) from err
        self.xet_paths = {i.path for i in infos if getattr(i, "xet_hash", None)}

    def stages(self, entry: Mapping[str, Any]) -> bool:
        return entry["path"] in self.xet_paths

    def download(self, entry: Mapping[str, Any], staging: str) -> str:
        """A Xet-backed file through hf_hub_download into ``staging``; returns its path. The
        caller hashes it and checks it against the listed sha256 before placing it."""
        from huggingface_hub import hf_hub_download  # noqa: PLC0415

        try:
            return hf_hub_download(
                self.repo_id,
                entry["path"],
                revision=self.commit,
                local_dir=staging,
                token=self.token,
                endpoint=self.endpoint,
                etag_timeout=self.timeout,
            )
        except Exception as err:
            raise TransferError(f"{entry['path']}: {self._refusal(err)}") from err

    def fetch(self, entry: Mapping[str, Any], writer: HashingWriter) -> int | None:
        from huggingface_hub import get_session, hf_hub_url  # noqa: PLC0415
        from huggingface_hub.errors import HfHubHTTPError  # noqa: PLC0415
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status  # noqa: PLC0415

        url = hf_hub_url(self.repo_id, entry["path"], revision=self.commit, endpoint=self.endpoint)
        for attempt in range(1, self.ATTEMPTS + 1):
            if writer.position >= entry["size"]:
                return None  # a complete partial: nothing left to ask for
            headers = build_hf_headers(token=self.token)
            if writer.position:
                headers["Range"] = f"bytes={writer.position}-"
            try:
                with get_session().stream(
                    "GET", url, headers=headers, timeout=self.timeout, follow_redirects=True
                ) as response:
                    hf_raise_for_status(response)
                    if writer.position and response.status_code == 206:
                        start = _content_range_start(response.headers.get("Content-Range", ""))
                        if start != writer.position:
                            raise TransferError(
                                f"{entry['path']}: asked for bytes from {writer.position}, "
                                f"the Hub sent from {start}"
                            )
                    elif writer.position:
                        writer.truncate(0)  # the server ignored Range: start over
                    # As the bytes arrive (a chunk size would hold them back until it fills,
                    # and a stalled connection would lose them).
                    for chunk in response.iter_bytes():
                        writer.write(chunk)
                return None
            except TransferError:
                raise
            except HfHubHTTPError as err:
                status = getattr(err.response, "status_code", None)
                if status not in self.RETRY_STATUS or attempt == self.ATTEMPTS:
                    raise TransferError(f"{entry['path']}: {self._refusal(err)}") from err
            except Exception as err:  # connection reset, read timeout, ... of the client
                if attempt == self.ATTEMPTS:
                    raise TransferError(
                        f"{entry['path']}: {type(err).__name__}: {err} "
                        f"(after {self.ATTEMPTS} attempts, timeout {self.timeout} s)"
                    ) from err
        return None  # pragma: no cover - the loop returns or raises


def xet_available() -> bool:
    """Whether hf_hub_download would use hf_xet: installed, and not disabled by the client's
    HF_HUB_DISABLE_XET (what huggingface_hub's own is_xet_available checks)."""
    disabled = os.environ.get("HF_HUB_DISABLE_XET", "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    return not disabled and importlib.util.find_spec("hf_xet") is not None


def make_source(spec: Mapping[str, Any], options: Mapping[str, Any]) -> Any:
    kind = spec["kind"]
    if kind == "local":
        return LocalSource(spec["path"])
    if kind == "http":
        return HttpSource(spec["url"], options["timeout"], options.get("http_token") or "")
    if kind == "rsync":
        return RsyncSource(spec["url"], options.get("rsync_password") or "", options["timeout"])
    if kind == "hf":
        return HubSource(
            spec["repo_id"],
            spec["revision"],
            options.get("hf_token") or "",
            options.get("hf_endpoint") or "",
            options.get("timeout") or 60,
        )
    raise SourceError(f"unknown source kind {kind!r}")  # pragma: no cover - parse_source
