"""Fan-out in one pass: the model_sync role's fan-out server (roles/model_sync/files/
model_fanout_server.py) on 127.0.0.1 in this process, the pulling host's sync through
model_sources.HttpSource. Every source byte is read once on the serving side, and nothing the
pulling side wrote is read back to be hashed."""

import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils import model_transfer
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
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_transfer import Ownership

SERVER_SCRIPT = (
    Path(__file__).resolve().parents[4] / "roles/model_sync/files/model_fanout_server.py"
)
_spec = importlib.util.spec_from_file_location("model_fanout_server", SERVER_SCRIPT)
fanout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fanout)

TOKEN = "t0ken-for-the-test"
FILES = {
    "config.json": b'{"architectures": ["Qwen3MoeForCausalLM"]}\n',
    "model-00001-of-00002.safetensors": os.urandom(3 * 1024 * 1024 + 17),
    "model-00002-of-00002.safetensors": os.urandom(2 * 1024 * 1024 + 5),
    "tokenizer/vocab.txt": b"a\nb\nc\n",
}


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


class ReadCounter:
    """Bytes read per real path by the serving side (the server's _open) and by every read loop
    of the sync (model_transfer.hash_stream: the pulling side reads nothing else)."""

    def __init__(self, monkeypatch):
        self.bytes: dict[str, int] = {}
        self.lock = threading.Lock()
        real_hash_stream = model_transfer.hash_stream
        real_server_open = fanout._open

        def add(key: str, count: int) -> None:
            with self.lock:
                self.bytes[key] = self.bytes.get(key, 0) + count

        class CountingFile:
            def __init__(self, path, *args, **kwargs):
                self.key = os.path.realpath(path)
                self.handle = real_server_open(path, *args, **kwargs)

            def readinto(self, view):
                got = self.handle.readinto(view)
                add(self.key, got or 0)
                return got

            def __getattr__(self, name):
                return getattr(self.handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

        def hash_stream(handle, hashes, limit=None, on_bytes=None):
            before = handle.tell()
            count = real_hash_stream(handle, hashes, limit, on_bytes)
            add(os.readlink(f"/proc/self/fd/{handle.fileno()}"), handle.tell() - before)
            return count

        monkeypatch.setattr(fanout, "_open", CountingFile)
        monkeypatch.setattr(model_transfer, "hash_stream", hash_stream)

    def read(self) -> dict[str, int]:
        return {path: count for path, count in self.bytes.items() if count}


@pytest.fixture
def first_host(tmp_path):
    """The source host's verified copy (a model_sync dest with its manifest)."""
    staged = tmp_path / "staged"
    for name, data in FILES.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_bytes(data)
    copy = tmp_path / "first"
    sync_model(options(staged, copy), False, Ownership())
    return copy


@pytest.fixture
def server(first_host):
    served = fanout.FanoutServer("127.0.0.1", 0, str(first_host), TOKEN, [])
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()


def manifest_of(root: Path) -> dict:
    return parse_manifest((root / MANIFEST_NAME).read_text(), "test")


def pull(server, first_host, dest, **extra):
    return sync_model(
        options(
            server.url,
            dest,
            http_token=TOKEN,
            source_manifest=json.loads((first_host / MANIFEST_NAME).read_text()),
            **extra,
        ),
        False,
        Ownership(),
    )


def test_the_pull_reads_each_served_file_once_and_nothing_it_wrote(
    server, first_host, tmp_path, monkeypatch
):
    counter = ReadCounter(monkeypatch)
    dest = tmp_path / "second"
    result = pull(server, first_host, dest)
    assert result["files_transferred"] == len(FILES)
    served = {os.path.realpath(first_host / name): len(data) for name, data in FILES.items()}
    # Every byte of every file once on the serving side, nothing read on the pulling side.
    assert counter.read() == served
    assert {e["path"]: e["sha256"] for e in manifest_of(dest)["files"]} == {
        e["path"]: e["sha256"] for e in manifest_of(first_host)["files"]
    }
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert not (dest / PARTIAL_DIR).exists()


def test_a_pull_resumes_a_partial_with_a_range_request(server, first_host, tmp_path, monkeypatch):
    dest = tmp_path / "second"
    entry = next(e for e in manifest_of(first_host)["files"] if e["path"].startswith("model-0000"))
    data = FILES[entry["path"]]
    key = partial_key({"path": entry["path"], "size": entry["size"], "sha256": entry["sha256"]})
    (dest / PARTIAL_DIR).mkdir(parents=True)
    (dest / PARTIAL_DIR / key).write_bytes(data[:1_000_000])
    counter = ReadCounter(monkeypatch)
    result = pull(server, first_host, dest)
    assert result["bytes_resumed"] == 1_000_000
    # The served side sent only the rest of that file (the prefix is rehashed once, on the
    # pulling side, to rebuild the hash state: resuming is the one re-read by design).
    assert counter.read()[os.path.realpath(first_host / entry["path"])] == len(data) - 1_000_000
    assert (dest / entry["path"]).read_bytes() == data


def request(server, path, headers=None):
    req = urllib.request.Request(server.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_requests_without_the_token_are_refused(server):
    assert request(server, "/config.json")[0] == 401
    assert request(server, "/config.json", {"Authorization": "Bearer wrong"})[0] == 401
    assert request(server, "/config.json", {"Authorization": f"Bearer {TOKEN}"}) == (
        200,
        FILES["config.json"],
    )


def test_only_the_manifest_and_its_files_are_served(server, first_host):
    (first_host / "not-in-the-manifest.txt").write_text("private")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert request(server, "/not-in-the-manifest.txt", auth)[0] == 404
    assert request(server, "/", auth)[0] == 404
    assert request(server, "/../staged/config.json", auth)[0] == 404
    status, body = request(server, f"/{MANIFEST_NAME}", auth)
    assert status == 200
    assert json.loads(body)["files"]


def test_a_client_outside_the_allowed_hosts_is_refused(first_host):
    # Bound to 127.0.0.1 but not a loopback-only server: the allow list decides.
    served = fanout.FanoutServer("127.0.0.1", 0, str(first_host), TOKEN, ["192.0.2.7"])
    served.loopback = False
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        status, _ = request(served, "/config.json", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 403
    finally:
        served.shutdown()
        served.server_close()


def test_a_host_name_is_bound_to_the_address_it_resolves_to(first_host):
    # model_sync_fanout_address accepts a host name, as the rsync daemon's address did.
    served = fanout.FanoutServer("localhost", 0, str(first_host), TOKEN, [])
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        assert ipaddress.ip_address(served.server_address[0]).is_loopback
        status, _ = request(served, "/config.json", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
    finally:
        served.shutdown()
        served.server_close()


def test_a_pull_with_a_wrong_token_fails_naming_the_refusal(server, first_host, tmp_path):
    with pytest.raises(SyncError, match="HTTP 401"):
        sync_model(
            options(
                server.url,
                tmp_path / "second",
                http_token="wrong",
                source_manifest=json.loads((first_host / MANIFEST_NAME).read_text()),
            ),
            False,
            Ownership(),
        )


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=100-", 1000, (100, 999)),
        ("bytes=0-9", 1000, (0, 9)),
        ("bytes=990-5000", 1000, (990, 999)),
        ("", 1000, None),
        ("bytes=1-2,5-6", 1000, None),
        ("items=1-", 1000, None),
        ("bytes=-500", 1000, None),
    ],
)
def test_range_headers(header, size, expected):
    assert fanout.parse_range(header, size) == expected


def test_a_range_past_the_end_is_unsatisfiable():
    with pytest.raises(ValueError, match="unsatisfiable"):
        fanout.parse_range("bytes=1000-", 1000)


def test_serve_detaches_reports_its_url_and_stop_ends_it(first_host, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    pid_file = tmp_path / "server.pid"
    done = subprocess.run(
        [
            sys.executable,
            str(SERVER_SCRIPT),
            "serve",
            "--root",
            str(first_host),
            "--address",
            "127.0.0.1",
            "--port",
            "0",
            "--token-file",
            str(token_file),
            "--pid-file",
            str(pid_file),
            "--max-seconds",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    assert int(pid_file.read_text()) == report["pid"]
    assert Path(f"/proc/{report['pid']}").exists()
    req = urllib.request.Request(
        report["url"] + "/config.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=5) as response:
        assert response.read() == FILES["config.json"]
    stopped = subprocess.run(
        [sys.executable, str(SERVER_SCRIPT), "stop", "--pid-file", str(pid_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert stopped.stdout.strip() == "stopped"
    assert not pid_file.exists()
    assert not Path(f"/proc/{report['pid']}").exists() or _is_zombie(report["pid"])
    again = subprocess.run(
        [sys.executable, str(SERVER_SCRIPT), "stop", "--pid-file", str(pid_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert again.stdout.strip() == "gone"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_serve_fails_with_the_reason_when_the_port_is_taken(first_host, server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port = server.server_address[1]
    done = subprocess.run(
        [
            sys.executable,
            str(SERVER_SCRIPT),
            "serve",
            "--root",
            str(first_host),
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
            "--token-file",
            str(token_file),
            "--pid-file",
            str(tmp_path / "pid"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert f"cannot serve {first_host} on 127.0.0.1:{port}" in done.stderr
