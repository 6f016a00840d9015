#!/usr/bin/env python3
"""The fan-out server of llmops.gpu_serving.model_sync: the source host's verified copy of a
model, served over HTTP to the other hosts of the play for as long as they pull it.

Private to the model_sync role, which copies it to the source host; standard library only, so
it runs on the host's own Python.

    model_fanout_server.py serve --root DIR --address A --port P --token-file F --pid-file F
                                 [--allow IP ...] [--user U] [--max-seconds N]
    model_fanout_server.py stop --pid-file F

``serve`` binds, then detaches and prints one JSON line ``{"pid": ..., "url": ...}`` (or fails
with the reason, e.g. the port is taken); the server exits by itself after ``--max-seconds``,
so a play that dies before ``stop`` does not leave it behind. It answers only:

- clients whose address is in ``--allow`` (the other hosts of the play), else 403;
- requests with ``Authorization: Bearer <token>`` (the token file's content), else 401;
- GET/HEAD of ``/.llmops-manifest.json`` and of the files that manifest lists (nothing else of
  the directory, no listing), with single ``Range: bytes=N-[M]`` requests answered 206 so that
  an interrupted pull resumes (RFC 9110 section 14).

The pulling hosts fetch with model_sync's https mirror source (model_sources.HttpSource),
which hashes the bytes as they arrive: each file is read once on the source host per pulling
host and never read back on the host that receives it.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import json
import os
import pwd
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANIFEST_NAME = ".llmops-manifest.json"
BUFFER_BYTES = 1024 * 1024

# Opening files for reading goes through here, so tests can count what is read.
_open = open


def load_listing(root: str) -> dict[str, int]:
    """URL path -> size of every file the manifest lists, plus the manifest itself."""
    manifest_path = os.path.join(root, MANIFEST_NAME)
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    listing = {"/" + MANIFEST_NAME: os.path.getsize(manifest_path)}
    for entry in manifest["files"]:
        listing["/" + urllib.parse.quote(entry["path"])] = int(entry["size"])
    return listing


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes=N-`` or ``bytes=N-M`` range within ``size``;
    None when the header is not one (the whole file is sent, as RFC 9110 allows)."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start > end:
        raise ValueError("unsatisfiable range")
    return start, end


class FanoutHandler(BaseHTTPRequestHandler):
    server_version = "llmops-model-fanout"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        return  # the play reports what was pulled; no log on the host

    def _refuse(self, code: int, reason: str) -> None:
        body = reason.encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if code == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _allowed(self) -> bool:
        server: FanoutServer = self.server  # type: ignore[assignment]
        client = ipaddress.ip_address(self.client_address[0])
        if client.version == 6 and client.ipv4_mapped:
            client = client.ipv4_mapped
        if client not in server.allowed and not (client.is_loopback and server.loopback):
            self._refuse(403, "this address is not a host of the fan-out")
            return False
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {server.token}".encode()):
            self._refuse(401, "a valid fan-out token is required")
            return False
        return True

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._allowed():
            return
        server: FanoutServer = self.server  # type: ignore[assignment]
        url_path = self.path.split("?", 1)[0]
        if url_path not in server.listing:
            self._refuse(404, "not a file of the served model")
            return
        path = os.path.join(server.root, *urllib.parse.unquote(url_path[1:]).split("/"))
        try:
            handle = _open(path, "rb", buffering=0)
        except OSError as err:
            self._refuse(404, f"cannot open the file: {err.strerror}")
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            try:
                wanted = parse_range(self.headers.get("Range", ""), size)
            except ValueError:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = wanted if wanted else (0, size - 1)
            length = end - start + 1 if size else 0
            self.send_response(206 if wanted else 200)
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command == "HEAD" or not length:
                return
            handle.seek(start)
            buffer = bytearray(BUFFER_BYTES)
            view = memoryview(buffer)
            left = length
            while left:
                got = handle.readinto(view[: min(left, BUFFER_BYTES)])
                if not got:
                    break  # the file shrank: the client sees a short body and retries
                self.wfile.write(view[:got])
                left -= got


class FanoutServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, port: int, root: str, token: str, allowed: list[str]):
        # model_sync_fanout_address may be a host name (the input rules accept one): bind to the
        # address it resolves to on this host, IPv4 or IPv6.
        family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
        self.address_family = family
        self.root = root
        self.token = token
        self.listing = load_listing(root)
        self.allowed = {ipaddress.ip_address(a) for a in allowed}
        # Bound to a loopback address only local processes can connect at all.
        self.loopback = ipaddress.ip_address(sockaddr[0]).is_loopback
        super().__init__((sockaddr[0], port), FanoutHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"


def drop_privileges(user: str) -> None:
    """Serve as the model's owner (files are 0644, readable by it) rather than as root."""
    if not user or os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def serve(args: argparse.Namespace) -> int:
    with open(args.token_file, encoding="utf-8") as handle:
        token = handle.read().strip()
    if not token:
        print(f"the token file {args.token_file} is empty", file=sys.stderr)
        return 2
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        # The parent reports what the detached server says once it listens (or why not).
        os.close(write_end)
        with os.fdopen(read_end, encoding="utf-8") as pipe:
            report = pipe.read().strip()
        if not report.startswith("{"):
            print(report or "the fan-out server exited before it listened", file=sys.stderr)
            return 1
        print(report)
        return 0
    os.close(read_end)
    os.setsid()
    try:
        server = FanoutServer(args.address, args.port, args.root, token, args.allow)
        # Written while still root: the pid file's directory is root's.
        with open(args.pid_file, "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
        drop_privileges(args.user)
    except (OSError, KeyError, ValueError) as err:
        message = f"cannot serve {args.root} on {args.address}:{args.port}: {err}"
        os.write(write_end, message.encode())
        os._exit(1)
    os.write(write_end, json.dumps({"pid": os.getpid(), "url": server.url}).encode())
    os.close(write_end)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    stop.wait(args.max_seconds)
    server.shutdown()
    server.server_close()
    os._exit(0)


def stop(args: argparse.Namespace) -> int:
    """Stop the server named by the pid file, if it still runs; prints "stopped" or "gone"."""
    try:
        with open(args.pid_file, encoding="utf-8") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        print("gone")
        return 0
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            ours = b"model_fanout_server.py" in handle.read()
    except OSError:
        ours = False
    state = "gone"
    if ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            state = "stopped"
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.pid_file)
    print(state)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve")
    run.add_argument("--root", required=True)
    run.add_argument("--address", required=True)
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--token-file", required=True)
    run.add_argument("--pid-file", required=True)
    run.add_argument("--allow", action="append", default=[])
    run.add_argument("--user", default="")
    run.add_argument("--max-seconds", type=float, default=86400)
    halt = commands.add_parser("stop")
    halt.add_argument("--pid-file", required=True)
    args = parser.parse_args(argv)
    return serve(args) if args.command == "serve" else stop(args)


if __name__ == "__main__":
    sys.exit(main())
