"""A Hugging Face Hub stand-in on 127.0.0.1 for model_sync's integration tests, plus a plain
static mirror. The real huggingface_hub client talks to it through its endpoint setting.

It implements what huggingface_hub 2.4.0 asks of the Hub to list and download a model, with
the Hub's own headers (see tests/fixtures/model_sync/SOURCES.md for captured real ones):

- ``GET /api/models/<org>/<name>[/revision/<rev>]`` (``?blobs=true``: sizes, ``blobId``,
  ``lfs.{size,sha256,pointerSize}``), what ``HfApi.model_info(files_metadata=True)`` reads;
  the revision is a branch, a tag or a commit, answered with the commit's ``sha``;
- ``GET /api/models/<org>/<name>/auth-check`` (``HfApi.auth_check``) and ``POST
  /api/models/<org>/<name>/paths-info/<rev>`` (``HfApi.get_paths_info``);
- ``HEAD|GET /<org>/<name>/resolve/<rev>/<path>``: git-stored files answer 200 with the
  content, ``ETag`` = git blob id and ``X-Repo-Commit``; LFS files answer 302 to a "CDN" URL
  with ``X-Linked-Etag`` = sha256, ``X-Linked-Size`` and ``X-Repo-Commit``, as the Hub does
  (``get_hf_file_metadata`` reads them without following the redirect);
- ``GET /cdn/<sha256>``: the LFS payload, ``Accept-Ranges: bytes``, 206 for ``Range:
  bytes=N-``/``N-M``, 416 past the end;
- errors as the Hub sends them: 401 + ``X-Error-Code: RepositoryNotFound`` for an unknown
  repository, 404 + ``RevisionNotFound``, 401 (no token) or 403 (a token without access) +
  ``GatedRepo`` for the files of a gated repository, whose metadata stays public,
  404 + ``EntryNotFound``.

Payloads can be throttled (bytes per second, per response) so a test can interrupt a download
half-way; every request is recorded for assertions.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 64 * 1024
STALL_SECONDS = 30


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


class HubRepo:
    """One model repository: commits (sha -> files), refs (branch or tag -> sha), some files
    in LFS. ``files`` and ``commit`` are those of the ``main`` branch's head.

    ``token`` makes it gated: its metadata stays public (as on the Hub, where
    ``GET /api/models/<repo>`` answers anyone with ``"gated": "manual"``), its files and its
    auth-check need the token.
    """

    def __init__(
        self,
        repo_id: str,
        files: dict[str, bytes],
        lfs: set[str],
        token: str = "",
        xet: frozenset[str] = frozenset(),
    ):
        self.repo_id = repo_id
        self.lfs = set(lfs)
        self.token = token
        # Files paths-info lists with a xetHash (Xet-backed on the Hub). The resolve answer
        # carries no X-Xet-Hash header for them, so hf_hub_download takes its plain HTTP path
        # (file_download.py: xet_get only when parse_xet_file_data_from_response found one):
        # hf_xet's own transfer protocol is not simulated, the client's choice of path is.
        self.xet = set(xet)
        self.commits: dict[str, dict[str, bytes]] = {}
        self.refs: dict[str, str] = {}
        self.push(files)

    def push(self, files: dict[str, bytes], branch: str = "main") -> str:
        """A new commit on ``branch`` with these files; returns its sha."""
        parent = self.refs.get(branch, "")
        commit = hashlib.sha1(
            (
                parent + repr(sorted((p, hashlib.sha256(d).hexdigest()) for p, d in files.items()))
            ).encode()
        ).hexdigest()
        self.commits[commit] = dict(files)
        self.refs[branch] = commit
        return commit

    def tag(self, name: str, commit: str = "") -> None:
        self.refs[name] = commit or self.refs["main"]

    def resolve(self, revision: str) -> str | None:
        """The commit a branch, tag or full commit sha names (the Hub accepts all three)."""
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None

    @property
    def commit(self) -> str:
        return self.refs["main"]

    @property
    def files(self) -> dict[str, bytes]:
        return self.commits[self.commit]

    def sibling(self, path: str, commit: str = "") -> dict:
        data = self.commits[commit or self.commit][path]
        if path in self.lfs:
            sha = hashlib.sha256(data).hexdigest()
            pointer = lfs_pointer(sha, len(data))
            return {
                "rfilename": path,
                "size": len(data),
                "blobId": git_blob_id(pointer),
                "lfs": {"size": len(data), "sha256": sha, "pointerSize": len(pointer)},
            }
        return {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}

    def path_info(self, path: str, commit: str) -> dict:
        """An entry of ``POST /api/models/<repo>/paths-info/<rev>`` (huggingface_hub's
        ``RepoFile(**entry)`` reads ``type``, ``path``, ``size``, ``oid`` and
        ``lfs.{oid,size,pointerSize}``, and ``xetHash`` into ``RepoFile.xet_hash`` for a
        Xet-backed file: hf_api.py RepoFile.__init__)."""
        sibling = self.sibling(path, commit)
        entry = {"type": "file", "path": path, "size": sibling["size"], "oid": sibling["blobId"]}
        if "lfs" in sibling:
            lfs = sibling["lfs"]
            entry["lfs"] = {
                "oid": lfs["sha256"],
                "size": lfs["size"],
                "pointerSize": lfs["pointerSize"],
            }
        if path in self.xet:
            entry["xetHash"] = hashlib.sha256(b"xet:" + self.commits[commit][path]).hexdigest()
        return entry


class FakeHub:
    """The server; use as a context manager. ``endpoint`` is what HF_ENDPOINT would be."""

    def __init__(
        self,
        repos: list[HubRepo],
        bytes_per_second: int = 0,
        stall_after: int = 0,
        port: int = 0,
    ):
        self.repos = {repo.repo_id: repo for repo in repos}
        self.bytes_per_second = bytes_per_second
        # Payload responses stop sending (without closing) after this many bytes, for up to
        # STALL_SECONDS: a stalled connection, for the client's read timeout. 0: never.
        self.stall_after = stall_after
        self.requests: list[dict] = []
        self._repos_for_blobs = repos
        self._blobs_key: tuple = ()
        self._blobs: dict[str, bytes] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        # The "CDN" LFS files redirect to: another host, as on the real Hub, where the client
        # stops following redirects when it reads a file's metadata.
        self._cdn = ThreadingHTTPServer(("127.0.0.2", 0), self._handler())
        self._threads = []
        for server in (self._server, self._cdn):
            server.daemon_threads = True
            self._threads.append(threading.Thread(target=server.serve_forever, daemon=True))

    @property
    def blobs(self) -> dict[str, bytes]:
        """LFS payloads by sha256, over every commit (pushed after start too)."""
        key = tuple(len(repo.commits) for repo in self._repos_for_blobs)
        if self._blobs_key != key:
            self._blobs_key, self._blobs = key, self._all_blobs()
        return self._blobs

    def _all_blobs(self) -> dict[str, bytes]:
        return {
            hashlib.sha256(data).hexdigest(): data
            for repo in self._repos_for_blobs
            for files in repo.commits.values()
            for path, data in files.items()
            if path in repo.lfs
        }

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.2:{self._cdn.server_address[1]}"

    def __enter__(self) -> FakeHub:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self._server, self._cdn):
            server.shutdown()
            server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._route(head=True)

            def do_GET(self):
                self._route(head=False)

            def do_POST(self):
                self._route(head=False)

            # --- routing ------------------------------------------------------------------

            def _route(self, head: bool) -> None:
                url = urllib.parse.urlsplit(self.path)
                path = urllib.parse.unquote(url.path)
                hub.requests.append(
                    {
                        "method": self.command,
                        "path": path,
                        "query": url.query,
                        "range": self.headers.get("Range"),
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                # huggingface_hub hf_api.py HfApi.model_info: GET /api/models/<repo> or
                # /api/models/<repo>/revision/<quote(rev, safe='')>, ?blobs=True when
                # files_metadata=True
                match = re.match(r"^/api/models/([^/]+/[^/]+?)(?:/revision/([^/]+))?/?$", path)
                if match:
                    return self._model_info(match[1], match[2] or "main", url.query, head)
                # huggingface_hub hf_api.py HfApi.auth_check: GET /api/models/<repo>/auth-check
                match = re.match(r"^/api/models/([^/]+/[^/]+)/auth-check$", path)
                if match:
                    if self._repo(match[1], "main", files=True) is not None:
                        self._send(200, {"Content-Type": "application/json"}, b"{}", head)
                    return None
                # hf_api.py HfApi.get_paths_info: POST /api/models/<repo>/paths-info/<rev>, a
                # form with paths=<path> (repeated) and expand=<bool>
                match = re.match(r"^/api/models/([^/]+/[^/]+)/paths-info/(.+)$", path)
                if match and self.command == "POST":
                    return self._paths_info(match[1], match[2])
                # huggingface_hub file_download.py hf_hub_url (constants.py
                # HUGGINGFACE_CO_URL_TEMPLATE): <endpoint>/<repo>/resolve/<rev>/<path>, what the
                # module streams from and hf_hub_download asks for its metadata (HEAD)
                match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if match:
                    return self._resolve(match[1], match[2], match[3], head)
                match = re.match(r"^/cdn/([0-9a-f]{64})$", path)
                if match and match[1] in hub.blobs:
                    return self._payload(hub.blobs[match[1]], head, {"ETag": f'"{match[1]}"'})
                return self._error(404, "EntryNotFound", f"{path} not found")

            def _repo(
                self, repo_id: str, revision: str, files: bool = False
            ) -> tuple[HubRepo, str] | None:
                """(repo, commit) for a request, or None once the Hub's error is sent.

                Errors as huggingface_hub's hf_raise_for_status reads them (utils/_http.py: the
                X-Error-Code header picks the exception, X-Error-Message is the server_message):
                a gated repository's files answer 401 GatedRepo without a token and 403 with a
                token that was not granted access, each with the Hub's wording.
                """
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._error(
                        401, "RepositoryNotFound", f"Repository Not Found for url: {self.path}."
                    )
                    return None
                given = self.headers.get("Authorization")
                if files and repo.token and given != f"Bearer {repo.token}":
                    if given:
                        self._error(
                            403,
                            "GatedRepo",
                            f"Access to model {repo_id} is restricted and you are not in the "
                            f"authorized list. Visit https://huggingface.co/{repo_id} to ask for "
                            "access.",
                        )
                    else:
                        self._error(
                            401,
                            "GatedRepo",
                            f"Access to model {repo_id} is restricted. You must have access to "
                            "it and be authenticated to access it. Please log in.",
                        )
                    return None
                commit = repo.resolve(revision)
                if commit is None:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    return None
                return repo, commit

            def _model_info(self, repo_id: str, revision: str, query: str, head: bool) -> None:
                found = self._repo(repo_id, urllib.parse.unquote(revision))
                if found is None:
                    return
                repo, commit = found
                blobs = "blobs=true" in query.lower() or "blobs=True" in query
                siblings = [
                    repo.sibling(p, commit) if blobs else {"rfilename": p}
                    for p in sorted(repo.commits[commit])
                ]
                body = json.dumps(
                    {
                        "_id": commit[:24],
                        "id": repo.repo_id,
                        "modelId": repo.repo_id,
                        "author": repo.repo_id.split("/")[0],
                        "sha": commit,
                        "private": False,
                        "gated": "manual" if repo.token else False,
                        "disabled": False,
                        "downloads": 0,
                        "likes": 0,
                        "tags": [],
                        "siblings": siblings,
                        "lastModified": "2026-01-05T10:00:00.000Z",
                        "createdAt": "2026-01-05T10:00:00.000Z",
                    }
                ).encode()
                self._send(200, {"Content-Type": "application/json"}, body, head)

            def _resolve(self, repo_id: str, revision: str, name: str, head: bool) -> None:
                found = self._repo(repo_id, urllib.parse.unquote(revision), files=True)
                if found is None:
                    return
                repo, commit = found
                if name not in repo.commits[commit]:
                    self._error(404, "EntryNotFound", f"{name} does not exist at {revision}")
                    return
                data = repo.commits[commit][name]
                headers = {"X-Repo-Commit": commit}
                if name in repo.lfs:
                    sha = hashlib.sha256(data).hexdigest()
                    headers.update(
                        {
                            "Location": f"{hub.cdn}/cdn/{sha}",
                            "X-Linked-Etag": f'"{sha}"',
                            "X-Linked-Size": str(len(data)),
                            "ETag": f'"{git_blob_id(lfs_pointer(sha, len(data)))}"',
                            "Content-Length": "0",
                        }
                    )
                    self.send_response(302)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    return
                headers["ETag"] = f'"{git_blob_id(data)}"'
                self._payload(data, head, headers)

            def _paths_info(self, repo_id: str, revision: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                found = self._repo(repo_id, urllib.parse.unquote(revision), files=True)
                if found is None:
                    return
                repo, commit = found
                entries = [
                    repo.path_info(p, commit)
                    for p in form.get("paths", [])
                    if p in repo.commits[commit]
                ]
                body = json.dumps(entries).encode()
                self._send(200, {"Content-Type": "application/json"}, body, False)

            # --- responses ----------------------------------------------------------------

            def _payload(self, data: bytes, head: bool, headers: dict) -> None:
                headers = dict(headers, **{"Accept-Ranges": "bytes"})
                start, end = 0, len(data) - 1
                status = 200
                wanted = self.headers.get("Range")
                if wanted:
                    match = re.match(r"^bytes=(\d+)-(\d*)$", wanted.strip())
                    if not match:
                        return self._error(400, "BadRange", f"cannot parse Range {wanted!r}")
                    start = int(match[1])
                    end = int(match[2]) if match[2] else len(data) - 1
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                    end = min(end, len(data) - 1)
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                body = data[start : end + 1]
                headers["Content-Type"] = "application/octet-stream"
                headers["Content-Length"] = str(len(body))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if head:
                    return None
                for offset in range(0, len(body), CHUNK):
                    if hub.stall_after and offset >= hub.stall_after:
                        self.wfile.flush()
                        stalled_until = time.monotonic() + STALL_SECONDS
                        while hub.stall_after and time.monotonic() < stalled_until:
                            time.sleep(0.05)
                        return None
                    self.wfile.write(body[offset : offset + CHUNK])
                    if hub.bytes_per_second:
                        time.sleep(CHUNK / hub.bytes_per_second)
                return None

            def _send(self, status: int, headers: dict, body: bytes, head: bool) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self._send(
                    status,
                    {
                        "Content-Type": "application/json",
                        "X-Error-Code": code,
                        "X-Error-Message": message,
                    },
                    body,
                    self.command == "HEAD",
                )

        return Handler


class StaticMirror:
    """A plain web server for a directory (a model synced by model_sync, manifest included),
    with Range support, throttling and a request log, like an internal nginx mirror."""

    def __init__(self, root: Path, bytes_per_second: int = 0):
        files = {
            str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }
        self.requests: list[dict] = []
        self._hub = FakeHub([], bytes_per_second)
        mirror = self
        base = self._hub._handler()

        class Handler(base):
            def _route(self, head: bool) -> None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                mirror.requests.append({"path": path, "range": self.headers.get("Range")})
                name = path.split("/", 2)[-1] if path.startswith("/models/") else None
                if name is None or name not in files:
                    return self._error(404, "EntryNotFound", f"{path} not found")
                return self._payload(files[name], head, {})

        self._hub._server.RequestHandlerClass = Handler

    @property
    def url(self) -> str:
        return f"{self._hub.endpoint}/models"

    def __enter__(self) -> StaticMirror:
        self._hub.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hub.__exit__(*exc)


if __name__ == "__main__":  # pragma: no cover - run on a test host by molecule/model_sync
    import argparse

    parser = argparse.ArgumentParser(description="Serve a directory as a Hub repository.")
    parser.add_argument("root", type=Path, help="the repository's files")
    parser.add_argument("--repo", default="org/model", help="repository id (org/name)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    cli = parser.parse_args()
    repo_files = {
        str(p.relative_to(cli.root)): p.read_bytes() for p in cli.root.rglob("*") if p.is_file()
    }
    big = {p for p, d in repo_files.items() if len(d) > 1024 * 1024}
    with FakeHub([HubRepo(cli.repo, repo_files, big)], port=cli.port) as served:
        print(served.endpoint, flush=True)
        threading.Event().wait()
