"""A Hugging Face Hub stand-in on 127.0.0.1 for model_sync's integration tests, plus a plain
static mirror. The real huggingface_hub client talks to it through its endpoint setting.

It implements what huggingface_hub 2.4.0 asks of the Hub to list and download a model, with
the Hub's own headers (see tests/fixtures/model_sync/SOURCES.md for captured real ones):

- ``GET /api/models/<org>/<name>[/revision/<rev>]`` (``?blobs=true``: sizes, ``blobId``,
  ``lfs.{size,sha256,pointerSize}``), what ``HfApi.model_info(files_metadata=True)`` reads;
- ``HEAD|GET /<org>/<name>/resolve/<rev>/<path>``: git-stored files answer 200 with the
  content, ``ETag`` = git blob id and ``X-Repo-Commit``; LFS files answer 302 to a "CDN" URL
  with ``X-Linked-Etag`` = sha256, ``X-Linked-Size`` and ``X-Repo-Commit``, as the Hub does
  (``get_hf_file_metadata`` reads them without following the redirect);
- ``GET /cdn/<sha256>``: the LFS payload, ``Accept-Ranges: bytes``, 206 for ``Range:
  bytes=N-``/``N-M``, 416 past the end;
- errors as the Hub sends them: 401 + ``X-Error-Code: RepositoryNotFound`` for an unknown
  repository, 404 + ``RevisionNotFound``, 401 + ``GatedRepo`` without the right token,
  404 + ``EntryNotFound``.

Payloads can be throttled (bytes per second, per response) so a test can interrupt a download
half-way; every request is recorded for assertions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 64 * 1024


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


class HubRepo:
    """One model repository at one commit: files (path -> bytes), some of them in LFS."""

    def __init__(self, repo_id: str, files: dict[str, bytes], lfs: set[str], token: str = ""):
        self.repo_id = repo_id
        self.files = dict(files)
        self.lfs = set(lfs)
        self.token = token
        self.commit = hashlib.sha1(
            repr(sorted((p, len(d)) for p, d in files.items())).encode()
        ).hexdigest()

    def sibling(self, path: str) -> dict:
        data = self.files[path]
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


class FakeHub:
    """The server; use as a context manager. ``endpoint`` is what HF_ENDPOINT would be."""

    def __init__(self, repos: list[HubRepo], bytes_per_second: int = 0):
        self.repos = {repo.repo_id: repo for repo in repos}
        self.bytes_per_second = bytes_per_second
        self.requests: list[dict] = []
        self.blobs = {
            hashlib.sha256(data).hexdigest(): data
            for repo in repos
            for path, data in repo.files.items()
            if path in repo.lfs
        }
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # The "CDN" LFS files redirect to: another host, as on the real Hub, where the client
        # stops following redirects when it reads a file's metadata.
        self._cdn = ThreadingHTTPServer(("127.0.0.2", 0), self._handler())
        self._threads = []
        for server in (self._server, self._cdn):
            server.daemon_threads = True
            self._threads.append(threading.Thread(target=server.serve_forever, daemon=True))

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
                match = re.match(r"^/api/models/([^/]+/[^/]+?)(?:/revision/([^/]+))?/?$", path)
                if match:
                    return self._model_info(match[1], match[2] or "main", url.query, head)
                match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if match:
                    return self._resolve(match[1], match[2], match[3], head)
                match = re.match(r"^/cdn/([0-9a-f]{64})$", path)
                if match and match[1] in hub.blobs:
                    return self._payload(hub.blobs[match[1]], head, {"ETag": f'"{match[1]}"'})
                return self._error(404, "EntryNotFound", f"{path} not found")

            def _repo(self, repo_id: str, revision: str) -> HubRepo | None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._error(
                        401, "RepositoryNotFound", f"Repository Not Found for url: {self.path}."
                    )
                    return None
                if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
                    self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted.")
                    return None
                if revision not in ("main", repo.commit):
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    return None
                return repo

            def _model_info(self, repo_id: str, revision: str, query: str, head: bool) -> None:
                repo = self._repo(repo_id, urllib.parse.unquote(revision))
                if repo is None:
                    return
                blobs = "blobs=true" in query.lower() or "blobs=True" in query
                siblings = [
                    repo.sibling(p) if blobs else {"rfilename": p} for p in sorted(repo.files)
                ]
                body = json.dumps(
                    {
                        "_id": repo.commit[:24],
                        "id": repo.repo_id,
                        "modelId": repo.repo_id,
                        "author": repo.repo_id.split("/")[0],
                        "sha": repo.commit,
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
                repo = self._repo(repo_id, revision)
                if repo is None:
                    return
                if name not in repo.files:
                    self._error(404, "EntryNotFound", f"{name} does not exist at {revision}")
                    return
                data = repo.files[name]
                headers = {"X-Repo-Commit": repo.commit}
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


if __name__ == "__main__":  # pragma: no cover - manual use: serve a directory as a Hub repo
    import sys

    root = Path(sys.argv[1])
    repo_files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    big = {p for p, d in repo_files.items() if len(d) > 1024 * 1024}
    with FakeHub([HubRepo(os.environ.get("REPO", "org/model"), repo_files, big)]) as served:
        print(served.endpoint, flush=True)
        threading.Event().wait()
