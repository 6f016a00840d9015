"""llmops.gpu_serving.model_sync run through ansible-playbook on this machine, against temporary
directories and servers on 127.0.0.1 only: a directory source, the real huggingface_hub client
talking to a Hub stand-in (tests/integration/hub_server.py), an HTTP mirror, an rsync daemon.

Each scenario follows the four steps: check mode -> apply -> apply again (unchanged, fast) ->
check mode again (unchanged).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_server import FakeHub, HubRepo, StaticMirror
from vllm_it import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ".llmops-manifest.json"
PARTIAL = ".llmops-partial"

SHARD_1 = os.urandom(6 * 1024 * 1024 + 3)
SHARD_2 = os.urandom(2 * 1024 * 1024 + 11)
MODEL = {
    "config.json": b'{"architectures": ["Qwen3MoeForCausalLM"], "torch_dtype": "bfloat16"}\n',
    "generation_config.json": b'{"do_sample": true}\n',
    "model-00001-of-00002.safetensors": SHARD_1,
    "model-00002-of-00002.safetensors": SHARD_2,
    "tokenizer/tokenizer.json": b'{"version": "1.0"}\n' * 300,
}
LFS = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
# huggingface_hub's http_get writes in 10 MiB chunks: a shard several chunks long shows progress
# and can be interrupted with a partial file on disk.
BIG_SHARD = os.urandom(30 * 1024 * 1024 + 7)
BIG_MODEL = dict(MODEL, **{"model-00001-of-00002.safetensors": BIG_SHARD})
THROTTLE = 8 * 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def model_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST and PARTIAL not in p.parts
    }


class Runner:
    """Writes a one-task playbook for the module and runs it on localhost."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.count = 0

    def command(self, args: dict, *flags: str) -> tuple[list[str], Path, dict]:
        self.count += 1
        result_file = self.tmp_path / f"result-{self.count}.json"
        playbook = self.tmp_path / f"play-{self.count}.yml"
        task = {
            "name": "Sync the model",
            "llmops.gpu_serving.model_sync": args,
            "register": "sync_result",
        }
        save = {
            "name": "Save the result",
            "ansible.builtin.copy": {
                "content": "{{ sync_result | to_json }}",
                "dest": str(result_file),
                "mode": "0600",
            },
            "check_mode": False,
            "diff": False,
        }
        play = [
            {
                "name": "Sync",
                "hosts": "localhost",
                "gather_facts": False,
                "tasks": [{"name": "Sync and save", "block": [task], "always": [save]}],
            }
        ]
        playbook.write_text(json.dumps(play))
        env = dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
            ANSIBLE_FORCE_COLOR="false",
            ANSIBLE_NOCOLOR="true",
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        )
        command = [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(playbook),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            *flags,
        ]
        return command, result_file, env

    def __call__(self, args: dict, *flags: str, expect_failure: bool = False) -> dict:
        command, result_file, env = self.command(args, *flags)
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert (done.returncode != 0) == expect_failure, done.stdout + done.stderr
        result = json.loads(result_file.read_text())
        result["_stdout"] = done.stdout
        return result


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first (from /proc, no extra dependency)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return list(reversed(found))


def sizes(paths: list[Path]) -> list[int]:
    found = []
    for path in paths:
        try:
            found.append(path.stat().st_size)
        except FileNotFoundError:
            continue
    return found


@pytest.fixture
def playbook(tmp_path):
    return Runner(tmp_path)


def four_steps(playbook, args: dict, dest: Path) -> tuple[dict, dict]:
    """check -> apply -> apply again -> check; returns (apply, apply again)."""
    check = playbook(args, "--check", "--diff")
    assert check["changed"] is True
    assert check["files_transferred"] == 0
    assert not dest.exists() or model_files(dest) == {}
    first = playbook(args, "--diff")
    assert first["changed"] is True
    second = playbook(args)
    assert second["changed"] is False, second
    assert second["bytes_transferred"] == 0
    # The re-run is a no-op by its cause, not by a wall-clock figure: nothing moved, and with the
    # fast verification nothing was read again either (size and mtime matched the manifest).
    assert second["files_transferred"] == 0
    if args.get("verify", "fast") == "fast":
        assert second["files_verified"] == 0, second
    assert playbook(args, "--check")["changed"] is False
    return first, second


# --- a directory on the host --------------------------------------------------------------


def test_local_directory_source(playbook, tmp_path):
    source = write_tree(tmp_path / "share" / "qwen3", MODEL)
    dest = tmp_path / "home" / "llm" / "model" / "qwen" / "qwen3-30b-a3b"
    args = {"source": str(source), "dest": str(dest), "owner": "nobody", "group": "nogroup"}
    first, _ = four_steps(playbook, args, dest)
    assert model_files(dest) == MODEL
    assert first["files_transferred"] == len(MODEL)
    assert first["bytes_transferred"] == sum(map(len, MODEL.values()))
    assert first["throughput"] > 0
    assert "+ model-00001-of-00002.safetensors" in first["_stdout"]  # --diff
    manifest = json.loads((dest / MANIFEST).read_text())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        name: sha256(data) for name, data in MODEL.items()
    }
    for path in [dest, dest / "tokenizer", *dest.rglob("*")]:
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (65534, 65534), path
        assert oct(info.st_mode & 0o777) == ("0o755" if path.is_dir() else "0o644"), path


def test_flipped_byte_is_repaired_by_full_verify(playbook, tmp_path):
    source = write_tree(tmp_path / "src", MODEL)
    dest = tmp_path / "dest"
    args = {"source": str(source), "dest": str(dest)}
    playbook(args)
    target = dest / "model-00001-of-00002.safetensors"
    before = target.stat()
    with open(target, "r+b") as handle:
        handle.seek(4_000_000)
        byte = handle.read(1)
        handle.seek(4_000_000)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size

    assert playbook(args)["changed"] is False  # fast: size and mtime still match
    check = playbook(dict(args, verify="full"), "--check")
    assert check["transfer"] == ["model-00001-of-00002.safetensors"]
    assert target.read_bytes() != SHARD_1
    repaired = playbook(dict(args, verify="full"))
    assert repaired["files_repaired"] == 1
    assert repaired["bytes_transferred"] == len(SHARD_1)
    assert target.read_bytes() == SHARD_1
    assert playbook(dict(args, verify="full"))["changed"] is False


# --- a source file rewritten while it is copied (issue 17) --------------------------------

TORN_SIZE = 256 * 1024 * 1024
TORN_EDGE = 1024 * 1024


def write_torn_candidate(path: Path) -> None:
    """A file large enough to be caught mid-read: random first and last MiB, a sparse middle
    (cheap on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(os.urandom(TORN_EDGE))
        handle.truncate(TORN_SIZE)
    rewrite_edges(path)


def rewrite_edges(path: Path) -> None:
    """Rewrite the file in place, same size: new first and last MiB. A reader that is past the
    first MiB and copies on gets the old head and the new tail, a file that never existed."""
    with open(path, "r+b") as handle:
        handle.write(os.urandom(TORN_EDGE))
        handle.seek(TORN_SIZE - TORN_EDGE)
        handle.write(os.urandom(TORN_EDGE))


def read_positions(path: Path) -> list[int]:
    """Offsets of every descriptor, in any process, open on ``path`` (from /proc/*/fdinfo)."""
    target = os.path.realpath(path)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == target:
                    info = (proc / "fdinfo" / fd.name).read_text()
                    found.append(int(info.split("pos:", 1)[1].split()[0]))
        except (OSError, IndexError, ValueError):
            continue
    return found


class RewriteWhileRead:
    """Rewrites ``path`` each time another process is seen reading it between its first and
    last MiB, at most ``times`` times, each time on a new read (its offset went back)."""

    def __init__(self, path: Path, times: int):
        import threading  # noqa: PLC0415

        self.path = path
        self.times = times
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        armed, last = True, 0
        while self.done < self.times and not self._stop.is_set():
            positions = read_positions(self.path)
            # A read only moves forward: an offset below the last one seen (or no reader) means
            # the copy was abandoned and the next one is a new read.
            if not positions or max(positions) < last:
                armed = True
            last = max(positions, default=0)
            if armed and any(4 * TORN_EDGE < p < TORN_SIZE - 4 * TORN_EDGE for p in positions):
                rewrite_edges(self.path)
                self.done += 1
                armed = False
            time.sleep(0.002)

    def __enter__(self) -> RewriteWhileRead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_local_file_rewritten_while_copied_is_copied_again_or_fails_naming_it(playbook, tmp_path):
    source = write_tree(tmp_path / "src", MODEL)
    name = "model-00001-of-00002.safetensors"
    write_torn_candidate(source / name)
    dest = tmp_path / "model"
    args = {"source": str(source), "dest": str(dest), "workers": 1}

    # Rewritten once, mid-read: the torn copy is dropped and the file copied again, whole.
    with RewriteWhileRead(source / name, times=1) as rewriter:
        first = playbook(args)
    assert rewriter.done == 1, "the copy was never seen mid-read"
    current = (source / name).read_bytes()
    assert (dest / name).read_bytes() == current
    manifest = {f["path"]: f for f in json.loads((dest / MANIFEST).read_text())["files"]}
    assert manifest[name]["sha256"] == sha256(current)
    assert first["files_transferred"] == len(MODEL)
    assert playbook(args)["changed"] is False

    # Rewritten during every copy: the sync gives up on that file, naming it, and places nothing
    # of it; the other files are in place and the next quiet run finishes.
    other = tmp_path / "model-2"
    args = dict(args, dest=str(other))
    with RewriteWhileRead(source / name, times=3) as rewriter:
        failed = playbook(args, expect_failure=True)
    assert rewriter.done == 3
    assert f"{name}: the source file was modified or replaced while it was read" in failed["msg"]
    assert "Traceback" not in failed["_stdout"]
    assert name not in model_files(other)
    assert not (other / MANIFEST).exists()
    assert model_files(other) == {k: v for k, v in MODEL.items() if k != name}
    again = playbook(args)
    assert again["files_transferred"] == 1
    assert (other / name).read_bytes() == (source / name).read_bytes()


def test_a_mirror_manifest_entry_without_sha256_is_refused(playbook, tmp_path):
    published = tmp_path / "published"
    playbook({"source": str(write_tree(tmp_path / "src", MODEL)), "dest": str(published)})
    manifest = json.loads((published / MANIFEST).read_text())
    for entry in manifest["files"]:
        if entry["path"] == "config.json":
            del entry["sha256"]
    (published / MANIFEST).write_text(json.dumps(manifest))
    with StaticMirror(published) as mirror:
        dest = tmp_path / "model"
        refused = playbook({"source": mirror.url, "dest": str(dest)}, expect_failure=True)
        assert "config.json has no sha256" in refused["msg"], refused["msg"]
        assert mirror.url in refused["msg"]
        # Refused from the listing: no file was asked for, nothing written.
        assert [r["path"] for r in mirror.requests] == [f"/models/{MANIFEST}"]
        assert not dest.exists()


# --- the Hugging Face Hub through the real client -----------------------------------------


def test_hub_source_through_the_real_client(playbook, tmp_path):
    repo = HubRepo("acme/tiny-moe", MODEL, LFS)
    with FakeHub([repo]) as hub:
        # The stand-in is faithful enough for the client's own download function.
        from huggingface_hub import hf_hub_download  # noqa: PLC0415

        fetched = hf_hub_download(
            "acme/tiny-moe",
            "model-00002-of-00002.safetensors",
            endpoint=hub.endpoint,
            local_dir=tmp_path / "client",
        )
        assert Path(fetched).read_bytes() == SHARD_2
        hub.requests.clear()

        dest = tmp_path / "model"
        args = {"source": "hf://acme/tiny-moe", "dest": str(dest), "hf_endpoint": hub.endpoint}
        first, _ = four_steps(playbook, args, dest)
        assert model_files(dest) == MODEL
        assert first["revision"] == repo.commit
        manifest = json.loads((dest / MANIFEST).read_text())
        assert manifest["revision"] == repo.commit
        by_path = {f["path"]: f for f in manifest["files"]}
        # Git-stored files were checked against their blob id; all have a sha256 now.
        assert by_path["config.json"]["git_sha1"] == repo.sibling("config.json")["blobId"]
        assert all(by_path[name]["sha256"] == sha256(data) for name, data in MODEL.items())
        # Files were fetched from the listed commit, and a synced model asks only for the list.
        downloads = [r["path"] for r in hub.requests if "/resolve/" in r["path"]]
        assert downloads
        assert all(f"/resolve/{repo.commit}/" in p for p in downloads)
        assert len(downloads) == len(MODEL)


def test_hub_xet_backed_files_go_through_hf_hub_download_and_are_verified_after(playbook, tmp_path):
    """With hf_xet importable (huggingface_hub 2.4.0 requires it on x86_64 and arm64, so the
    role's virtualenv and this .venv have it), a file the Hub lists with a xetHash is fetched by
    hf_hub_download into the partial area, then hashed once and checked against the listed
    sha256 before it gets its name; the other files stream through the writer."""
    pytest.importorskip("hf_xet")
    xet_shard = "model-00001-of-00002.safetensors"
    repo = HubRepo("acme/tiny-moe", MODEL, LFS, xet=frozenset({xet_shard}))
    with FakeHub([repo]) as hub:
        dest = tmp_path / "model"
        args = {"source": "hf://acme/tiny-moe", "dest": str(dest), "hf_endpoint": hub.endpoint}
        first, _ = four_steps(playbook, args, dest)
        assert first["files_transferred"] == len(MODEL)
        assert model_files(dest) == MODEL
        manifest = {f["path"]: f for f in json.loads((dest / MANIFEST).read_text())["files"]}
        assert manifest[xet_shard]["sha256"] == sha256(SHARD_1)
        assert not (dest / PARTIAL).exists()  # hf_hub_download's staging went with it
        resolved = [
            (r["method"], r["path"].rsplit("/", 1)[-1])
            for r in hub.requests
            if f"/resolve/{repo.commit}/" in r["path"]
        ]
        # hf_hub_download asks for the metadata (HEAD) and then downloads from the redirect;
        # the module's own streaming GETs the resolve URL.
        assert ("HEAD", xet_shard) in resolved
        assert ("GET", xet_shard) not in resolved
        assert ("GET", "model-00002-of-00002.safetensors") in resolved
        assert any(
            r["path"].startswith("/api/models/acme/tiny-moe/paths-info/") for r in hub.requests
        )


def test_hub_gated_repository_needs_the_token(playbook, tmp_path):
    with FakeHub([HubRepo("acme/gated", MODEL, LFS, token="hf_secret")]) as hub:
        dest = tmp_path / "model"
        args = {"source": "hf://acme/gated", "dest": str(dest), "hf_endpoint": hub.endpoint}
        refused = playbook(args, expect_failure=True)
        # The Hub's own reason, before anything was written (the metadata of a gated
        # repository is public, its files are not).
        assert "is a gated repository and the Hub refused access" in refused["msg"]
        assert "You must have access to it and be authenticated" in refused["msg"], refused
        assert "Traceback" not in refused["_stdout"]
        assert not dest.exists()
        wrong = playbook(dict(args, hf_token="hf_other"), expect_failure=True)
        assert "you are not in the authorized list" in wrong["msg"], wrong["msg"]
        assert not dest.exists()
        synced = playbook(dict(args, hf_token="hf_secret"))
        assert synced["changed"] is True
        assert "hf_secret" not in synced["_stdout"]
        assert model_files(dest) == MODEL


def test_hub_revision_and_tag_resolve_to_their_commit(playbook, tmp_path):
    repo = HubRepo("acme/tiny-moe", MODEL, LFS)
    old_commit = repo.commit
    repo.tag("v1.0")
    newer = dict(MODEL, **{"model-00002-of-00002.safetensors": os.urandom(1024 * 1024 + 1)})
    new_commit = repo.push(newer)
    with FakeHub([repo]) as hub:
        for source, revision, commit, files in [
            ("hf://acme/tiny-moe@v1.0", "", old_commit, MODEL),
            ("hf://acme/tiny-moe", "v1.0", old_commit, MODEL),
            (f"hf://acme/tiny-moe@{old_commit}", "", old_commit, MODEL),
            ("hf://acme/tiny-moe", "main", new_commit, newer),
            ("hf://acme/tiny-moe", "", new_commit, newer),
        ]:
            dest = tmp_path / f"model-{source.rsplit('@', 1)[-1][:12]}-{revision or 'none'}"
            args = {"source": source, "dest": str(dest), "hf_endpoint": hub.endpoint}
            if revision:
                args["revision"] = revision
            hub.requests.clear()
            synced = playbook(args)
            assert synced["revision"] == commit, (source, revision)
            assert json.loads((dest / MANIFEST).read_text())["revision"] == commit
            assert model_files(dest) == files, (source, revision)
            downloads = [r["path"] for r in hub.requests if "/resolve/" in r["path"]]
            assert downloads
            assert all(f"/resolve/{commit}/" in p for p in downloads)
        # Moving the tag is a change the next run sees (and fetches only what differs).
        repo.tag("v1.0", new_commit)
        dest = tmp_path / "model-v1.0-none"
        moved = playbook(
            {"source": "hf://acme/tiny-moe@v1.0", "dest": str(dest), "hf_endpoint": hub.endpoint}
        )
        assert moved["revision"] == new_commit
        assert moved["transfer"] == ["model-00002-of-00002.safetensors"]
        assert model_files(dest) == newer
        missing = playbook(
            {
                "source": "hf://acme/tiny-moe@v9",
                "dest": str(tmp_path / "x"),
                "hf_endpoint": hub.endpoint,
            },
            expect_failure=True,
        )
        assert "revision 'v9' not found" in missing["msg"], missing["msg"]
        assert not (tmp_path / "x").exists()


def test_hub_timeout_option_bounds_a_stalled_download(playbook, tmp_path):
    repo = HubRepo("acme/tiny-moe", BIG_MODEL, LFS)
    with FakeHub([repo], stall_after=1024 * 1024) as hub:
        dest = tmp_path / "model"
        args = {
            "source": "hf://acme/tiny-moe",
            "dest": str(dest),
            "hf_endpoint": hub.endpoint,
            "timeout": 2,
            "include": ["model-00001-of-00002.safetensors"],
        }
        stalled = playbook(args, expect_failure=True)
        assert "timeout 2 s" in stalled["msg"], stalled["msg"]
        assert "model-00001-of-00002.safetensors" not in model_files(dest)
        # Each attempt resumed where the previous one stalled.
        ranges = [r["range"] for r in hub.requests if r["path"].startswith("/cdn/")]
        assert ranges[0] is None
        assert all(r and not r.startswith("bytes=0-") for r in ranges[1:]), ranges
        hub.stall_after = 0
        assert playbook(dict(args, timeout=60))["changed"] is True
        assert model_files(dest) == {
            "model-00001-of-00002.safetensors": BIG_MODEL["model-00001-of-00002.safetensors"]
        }


def test_hub_listing_that_escapes_dest_is_refused_before_writing(playbook, tmp_path):
    evil = dict(MODEL, **{"../../etc/cron.d/evil": b"* * * * * root true\n"})
    with FakeHub([HubRepo("acme/evil", evil, set())]) as hub:
        dest = tmp_path / "model"
        refused = playbook(
            {"source": "hf://acme/evil", "dest": str(dest), "hf_endpoint": hub.endpoint},
            expect_failure=True,
        )
        assert "'..'" in refused["msg"]
        assert not dest.exists()


def test_killed_download_resumes_and_never_leaves_a_partial_under_a_final_name(playbook, tmp_path):
    repo = HubRepo("acme/tiny-moe", BIG_MODEL, LFS)
    with FakeHub([repo], bytes_per_second=THROTTLE) as hub:
        dest = tmp_path / "model"
        args = {
            "source": "hf://acme/tiny-moe",
            "dest": str(dest),
            "hf_endpoint": hub.endpoint,
            "workers": 1,
            "progress": False,  # a child of the play, not a detached async job
        }
        command, _, env = playbook.command(args)
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        partials: list[Path] = []
        while time.monotonic() < deadline:
            partials = [p for p in (dest / PARTIAL).glob("*") if p.name != "journal.json"]
            if any(size > 1024 * 1024 for size in sizes(partials)):
                break
            time.sleep(0.1)
        # Ansible's workers start their own sessions: kill the whole tree, module included.
        for pid in [*descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        assert partials, "the download never started"
        assert not (dest / MANIFEST).exists()
        # Whatever has a final name is complete and correct; the rest is only in partials.
        for name, data in model_files(dest).items():
            assert data == BIG_MODEL[name], name
        assert "model-00001-of-00002.safetensors" not in model_files(dest)
        partial_bytes = sum(sizes(partials))

        hub.bytes_per_second = 0
        hub.requests.clear()
        resumed = playbook(dict(args, progress=True))
        assert resumed["changed"] is True
        assert resumed["bytes_resumed"] > 0
        assert resumed["bytes_resumed"] <= partial_bytes
        assert resumed["bytes_transferred"] < sum(map(len, BIG_MODEL.values()))
        ranges = [r["range"] for r in hub.requests if r["range"]]
        assert any(not r.startswith("bytes=0-") for r in ranges), ranges
        assert model_files(dest) == BIG_MODEL
        assert not (dest / PARTIAL).exists()


def test_progress_is_shown_on_the_controller(playbook, tmp_path):
    with FakeHub([HubRepo("acme/tiny-moe", BIG_MODEL, LFS)], bytes_per_second=THROTTLE) as hub:
        dest = tmp_path / "model"
        result = playbook(
            {
                "source": "hf://acme/tiny-moe",
                "dest": str(dest),
                "hf_endpoint": hub.endpoint,
                "progress_interval": 1,
            }
        )
        lines = [line for line in result["_stdout"].splitlines() if f"model_sync {dest}:" in line]
        assert lines, result["_stdout"]
        total = f"{sum(map(len, BIG_MODEL.values())) / 1024**2:.1f} MiB"
        assert any(f"MiB / {total}" in line and "/s, ETA" in line for line in lines), lines
        assert model_files(dest) == BIG_MODEL
        assert not list(Path("/tmp").glob(".llmops-model-sync-*.json"))


# --- an HTTP mirror and an rsync daemon ---------------------------------------------------


def test_http_mirror_source_resumes_with_range(playbook, tmp_path):
    published = tmp_path / "published"
    playbook({"source": str(write_tree(tmp_path / "src", MODEL)), "dest": str(published)})
    with StaticMirror(published) as mirror:
        dest = tmp_path / "model"
        args = {"source": mirror.url, "dest": str(dest)}
        four_steps(playbook, args, dest)
        assert model_files(dest) == MODEL

        # A partial left by an interrupted run is continued with a Range request.
        (dest / "model-00001-of-00002.safetensors").unlink()
        first_run = json.loads((dest / MANIFEST).read_text())
        entry = next(f for f in first_run["files"] if f["path"].startswith("model-00001"))
        sys.path.insert(0, str(REPO_ROOT / "collections"))
        from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (  # noqa: PLC0415
            partial_key,
        )

        key = partial_key({"path": entry["path"], "size": entry["size"], "sha256": entry["sha256"]})
        (dest / PARTIAL).mkdir()
        (dest / PARTIAL / key).write_bytes(SHARD_1[:1_000_000])
        mirror.requests.clear()
        resumed = playbook(args)
        assert resumed["bytes_resumed"] == 1_000_000
        assert {"path": "/models/model-00001-of-00002.safetensors", "range": "bytes=1000000-"} in (
            mirror.requests
        )
        assert model_files(dest) == MODEL


@pytest.fixture
def rsync_daemon(tmp_path):
    """An rsync daemon on 127.0.0.1 with a password-protected module over tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    secrets = tmp_path / "rsyncd.secrets"
    secrets.write_text("fanout:s3cret\n")
    secrets.chmod(0o600)
    port = free_port()
    config = tmp_path / "rsyncd.conf"
    config.write_text(
        f"pid file = {tmp_path}/rsyncd.pid\nuse chroot = false\nuid = root\ngid = root\n"
        f"[models]\n  path = {served}\n  read only = true\n  auth users = fanout\n"
        f"  secrets file = {secrets}\n"
    )
    daemon = subprocess.Popen(
        [
            "rsync",
            "--daemon",
            "--no-detach",
            f"--config={config}",
            "--address=127.0.0.1",
            f"--port={port}",
        ]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield served, f"rsync://fanout@127.0.0.1:{port}/models"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_rsync_daemon_source_with_and_without_a_manifest(playbook, tmp_path, rsync_daemon):
    served, url = rsync_daemon
    # A host that synced the model (manifest included), and a plain copy without one.
    playbook({"source": str(write_tree(tmp_path / "src", MODEL)), "dest": str(served / "synced")})
    write_tree(served / "plain", MODEL)

    dest = tmp_path / "from-synced"
    args = {"source": f"{url}/synced", "dest": str(dest), "rsync_password": "s3cret"}
    first, _ = four_steps(playbook, args, dest)
    assert model_files(dest) == MODEL
    assert "s3cret" not in first["_stdout"]
    theirs = {
        f["path"]: f["sha256"]
        for f in json.loads((served / "synced" / MANIFEST).read_text())["files"]
    }
    ours = {f["path"]: f["sha256"] for f in json.loads((dest / MANIFEST).read_text())["files"]}
    assert ours == theirs

    plain = tmp_path / "from-plain"
    args = {"source": f"{url}/plain", "dest": str(plain), "rsync_password": "s3cret"}
    assert playbook(args)["files_transferred"] == len(MODEL)
    assert model_files(plain) == MODEL
    again = playbook(args)  # identified by size and mtime from the listing
    assert again["changed"] is False, again

    wrong = playbook(
        dict(args, rsync_password="nope", dest=str(tmp_path / "x")), expect_failure=True
    )
    assert "auth failed" in wrong["msg"], wrong["msg"]


def test_rsync_source_is_verified_against_the_given_manifest(playbook, tmp_path, rsync_daemon):
    served, url = rsync_daemon
    playbook({"source": str(write_tree(tmp_path / "src", MODEL)), "dest": str(served / "synced")})
    manifest = json.loads((served / "synced" / MANIFEST).read_text())
    # The served copy is corrupted after its manifest was written: the puller must refuse it.
    (served / "synced" / "generation_config.json").write_bytes(b'{"do_sample": fals}\n')
    dest = tmp_path / "puller"
    refused = playbook(
        {
            "source": f"{url}/synced",
            "dest": str(dest),
            "rsync_password": "s3cret",
            "source_manifest": manifest,
        },
        expect_failure=True,
    )
    assert "generation_config.json: sha256" in refused["msg"], refused["msg"]
    assert not (dest / "generation_config.json").exists()
    assert (dest / "model-00001-of-00002.safetensors").read_bytes() == SHARD_1


def processes_with(token: str, needle: str) -> list[int]:
    """Processes of this test only (their environment holds ``token``) whose command line
    contains ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in environ and needle.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_a_job_that_dies_with_its_async_wrapper_fails_the_task(playbook, tmp_path):
    """SIGKILL of the async job (wrapper and module: the OOM killer, a reboot) leaves a job
    file that reads "started" for ever; the controller notices the module is gone instead of
    waiting for sync_timeout."""
    with FakeHub([HubRepo("acme/tiny-moe", BIG_MODEL, LFS)], bytes_per_second=THROTTLE) as hub:
        dest = tmp_path / "model"
        args = {
            "source": "hf://acme/tiny-moe",
            "dest": str(dest),
            "hf_endpoint": hub.endpoint,
            "workers": 1,
            "progress_interval": 1,
            "sync_timeout": 3600,
        }
        command, result_file, env = playbook.command(args)
        token = f"llmops-test-{os.getpid()}-{time.monotonic_ns()}"
        env["LLMOPS_MODEL_SYNC_TEST"] = token
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                partials = [p for p in (dest / PARTIAL).glob("*") if p.name != "journal.json"]
                if any(size > 1024 * 1024 for size in sizes(partials)):
                    break
                time.sleep(0.1)
            job = processes_with(token, "AnsiballZ_model_sync")
            assert job, "the async job never started"
            for pid in job:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode != 0, output
    result = json.loads(result_file.read_text())
    assert "stopped without a result" in result["msg"], result["msg"]
    assert "is gone" in result["msg"], result["msg"]
    assert "sync_timeout" not in result["msg"]
    assert not (dest / MANIFEST).exists()
    assert "model-00001-of-00002.safetensors" not in model_files(dest)
    assert not list(Path("/tmp").glob(".llmops-model-sync-*.json"))


# --- refusals before anything is written ---------------------------------------------------


def test_not_enough_space_is_refused_by_the_real_file_system(playbook, tmp_path):
    """No stand-in for statvfs: ask for more free space than this file system has."""
    source = write_tree(tmp_path / "src", MODEL)
    dest = tmp_path / "model"
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    args = {"source": str(source), "dest": str(dest), "min_free_bytes": free + 1024**4}
    for flags in [("--check",), ()]:
        refused = playbook(args, *flags, expect_failure=True)
        assert "not enough space on" in refused["msg"], refused["msg"]
        assert "nothing written" in refused["msg"]
        assert refused["bytes_to_transfer"] == sum(map(len, MODEL.values()))
        assert not dest.exists()
    assert playbook(dict(args, min_free_bytes=0))["changed"] is True


@pytest.mark.parametrize("case", ["dest is a file", "dest inside the source", "outside base"])
def test_bad_destinations_fail_in_one_line_without_a_traceback(playbook, tmp_path, case):
    source = write_tree(tmp_path / "src", MODEL)
    (tmp_path / "a-file").write_text("x")
    dest, extra, expected = {
        "dest is a file": (tmp_path / "a-file", {}, "dest exists and is not a directory"),
        "dest inside the source": (source / "copy", {}, "choose a dest outside the source"),
        "outside base": (tmp_path / "etc", {"base_dir": str(tmp_path / "base")}, "not inside"),
    }[case]
    refused = playbook(
        dict({"source": str(source), "dest": str(dest)}, **extra), expect_failure=True
    )
    assert expected in refused["msg"], refused["msg"]
    assert "Traceback" not in refused["_stdout"]
    assert len(refused["msg"]) < 300, refused["msg"]
    assert not (source / "copy").exists()
    assert not (tmp_path / "etc").exists()


def test_state_absent_removes_what_model_sync_wrote_and_nothing_else(playbook, tmp_path):
    base = tmp_path / "base"
    dest = base / "acme" / "tiny"
    source = write_tree(tmp_path / "src", MODEL)
    playbook({"source": str(source), "dest": str(dest), "base_dir": str(base)})
    (dest / "README.local").write_text("the operator's notes")
    absent = {"state": "absent", "dest": str(dest), "base_dir": str(base)}
    check = playbook(absent, "--check")
    assert check["changed"] is True
    assert sorted(check["removed"]) == sorted(MODEL)
    assert model_files(dest) == dict(MODEL, **{"README.local": b"the operator's notes"})
    removed = playbook(absent)
    assert sorted(removed["removed"]) == sorted(MODEL)
    assert model_files(dest) == {"README.local": b"the operator's notes"}
    assert not (dest / MANIFEST).exists()
    assert playbook(absent)["changed"] is False
    # A directory model_sync never wrote, given by mistake, is refused or left alone.
    refused = playbook(dict(absent, dest=str(source.parent)), expect_failure=True)
    assert "not inside the model base directory" in refused["msg"]
    assert model_files(source) == MODEL


@pytest.fixture
def small_file_system(tmp_path):
    """A 48 MiB tmpfs (needs the right to mount, which the test machines' root has)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_mid_run_fails_cleanly_and_the_next_run_resumes(
    playbook, tmp_path, small_file_system
):
    """The space check passed, then something else filled the disk during the download."""
    import threading  # noqa: PLC0415

    repo = HubRepo("acme/tiny-moe", BIG_MODEL, LFS)
    dest = small_file_system / "model"
    shard = "model-00001-of-00002.safetensors"
    filler = small_file_system / "filler"
    with FakeHub([repo], bytes_per_second=THROTTLE) as hub:
        args = {"source": "hf://acme/tiny-moe", "dest": str(dest), "hf_endpoint": hub.endpoint}

        def fill_when_half_way() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                partials = [p for p in (dest / PARTIAL).glob("*") if p.name != "journal.json"]
                if any(size > 4 * 1024 * 1024 for size in sizes(partials)):
                    break
                time.sleep(0.05)
            with open(filler, "wb") as handle, contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * 1024 * 1024)

        filling = threading.Thread(target=fill_when_half_way)
        filling.start()
        try:
            full = playbook(args, expect_failure=True)
        finally:
            filling.join()
        assert "No space left on device" in full["msg"], full["msg"]
        assert "the next run resumes the rest" in full["msg"]
        assert "Traceback" not in full["_stdout"]
        assert not (dest / MANIFEST).exists()
        assert shard not in model_files(dest)  # no torn file under a final name
        for name, data in model_files(dest).items():
            assert data == BIG_MODEL[name], name

        filler.unlink()
        hub.bytes_per_second = 0
        resumed = playbook(args)
        assert resumed["bytes_resumed"] > 0
        assert model_files(dest) == BIG_MODEL
        assert not (dest / PARTIAL).exists()


def test_a_model_larger_than_the_file_system_is_refused_before_writing(
    playbook, tmp_path, small_file_system
):
    """No min_free_bytes margin and no stand-in for statvfs: the model (a 64 MiB shard, sparse
    on the source side) does not fit the 48 MiB file system of dest."""
    source = write_tree(tmp_path / "src", MODEL)
    with open(source / "model-00003-of-00003.safetensors", "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    dest = small_file_system / "model"
    args = {"source": str(source), "dest": str(dest), "min_free_bytes": 0}
    for flags in [("--check",), ()]:
        refused = playbook(args, *flags, expect_failure=True)
        assert f"not enough space on {small_file_system}:" in refused["msg"], refused["msg"]
        assert "MiB free, and 0 B must stay free" in refused["msg"]
        assert "nothing written" in refused["msg"]
        assert not dest.exists()
    assert list(small_file_system.iterdir()) == []


def test_controller_work_per_sync(playbook, tmp_path):
    """What the controller costs, counted in remote runs rather than seconds: a first sync is
    one async start and one async_status (polling is a shell probe), a re-run of a model in
    place is one plain module run and nothing asynchronous."""
    source = write_tree(tmp_path / "src", MODEL)
    dest = tmp_path / "model"
    args = {"source": str(source), "dest": str(dest), "progress_interval": 1}

    def module_runs(output: str) -> dict[str, int]:
        runs = {}
        for name in ("model_sync", "async_wrapper", "async_status"):
            runs[name] = len(re.findall(rf"EXEC .*python\S* \S*/(?:AnsiballZ_)?{name}\.py", output))
        return runs

    first = playbook(args, "-vvv")
    assert first["changed"] is True
    assert module_runs(first["_stdout"]) == {"model_sync": 0, "async_wrapper": 1, "async_status": 1}
    again = playbook(args, "-vvv")
    assert again["changed"] is False
    assert module_runs(again["_stdout"]) == {"model_sync": 1, "async_wrapper": 0, "async_status": 0}
    # A re-run with work to do asks once, then runs asynchronously.
    (dest / "config.json").unlink()
    repaired = playbook(args, "-vvv")
    assert repaired["transfer"] == ["config.json"]
    assert module_runs(repaired["_stdout"]) == {
        "model_sync": 1,
        "async_wrapper": 1,
        "async_status": 1,
    }


# --- fan-out between two hosts through the role -------------------------------------------

FANOUT_USER = "llmops-fanout-it"


def run_fanout_role(tmp_path: Path, base: Path, source: Path, port: int, name: str) -> tuple:
    """The model_sync role on two hosts, "first" and "second", both this machine over the
    local connection with a model base of their own: the first syncs from ``source``, the
    second pulls from the first's fan-out server on 127.0.0.1:``port``."""
    inventory = tmp_path / f"{name}-inventory.ini"
    inventory.write_text(
        "[fleet]\n"
        f"first model_sync_base_dir={base / 'first'}\n"
        f"second model_sync_base_dir={base / 'second'}\n"
        "[fleet:vars]\n"
        f"ansible_connection=local\nansible_python_interpreter={sys.executable}\n"
    )
    play = [
        {
            "name": "Fan out",
            "hosts": "fleet",
            "gather_facts": False,
            "vars": {
                "model_sync_models": [{"name": "acme/tiny", "source": str(source)}],
                "model_sync_user": FANOUT_USER,
                "model_sync_group": FANOUT_USER,
                "model_sync_fanout": True,
                "model_sync_fanout_address": "127.0.0.1",
                "model_sync_fanout_port": port,
                "model_sync_progress_interval": 1,
            },
            "roles": [{"role": "llmops.gpu_serving.model_sync"}],
        }
    ]
    playbook = tmp_path / f"{name}.yml"
    playbook.write_text(json.dumps(play))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
        ANSIBLE_NOCOLOR="true",
        ANSIBLE_LOCALHOST_WARNING="false",
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(playbook),
            "-i",
            str(inventory),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    (tmp_path / f"{name}.log").write_text(done.stdout + done.stderr)
    return done.returncode, done.stdout + done.stderr


def recap(output: str) -> dict[str, dict[str, int]]:
    found = {}
    for host, counts in re.findall(r"^(first|second)\s+:\s+(.*)$", output, re.MULTILINE):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def fanout_base():
    """Model bases outside pytest's 0700 tmp tree: the fan-out server reads them as the model
    user, as on a real host."""
    base = Path(f"/tmp/llmops-fanout-it-{os.getpid()}")
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)
    subprocess.run(["userdel", "-r", FANOUT_USER], capture_output=True, check=False)
    subprocess.run(["groupdel", FANOUT_USER], capture_output=True, check=False)


def test_fanout_pulls_over_http_from_the_first_host_and_tears_the_server_down(
    tmp_path, fanout_base
):
    source = write_tree(tmp_path / "staged", MODEL)
    port = free_port()
    rc, output = run_fanout_role(tmp_path, fanout_base, source, port, "first-run")
    assert rc == 0, output
    first, second = fanout_base / "first/acme/tiny", fanout_base / "second/acme/tiny"
    assert model_files(first) == MODEL
    assert model_files(second) == MODEL
    pulled = json.loads((second / MANIFEST).read_text())
    assert pulled["source"] == f"http://127.0.0.1:{port}"
    served = json.loads((first / MANIFEST).read_text())
    assert {f["path"]: f["sha256"] for f in pulled["files"]} == {
        f["path"]: f["sha256"] for f in served["files"]
    }
    assert "Start the fan-out server on the source host" in output
    # Torn down: no server, no token, nothing listening.
    assert not Path("/run/llmops-model-sync").exists()
    assert port_is_closed(port)

    # In sync everywhere: nothing changes and no server starts.
    rc, output = run_fanout_role(tmp_path, fanout_base, source, port, "again")
    assert rc == 0, output
    assert {host: counts["changed"] for host, counts in recap(output).items()} == {
        "first": 0,
        "second": 0,
    }, output
    assert not re.search(r"TASK \[.*Start the fan-out server.*\]\n(changed|ok)", output)

    # A pull that fails (the first host's file no longer matches its manifest: same size and
    # mtime, one byte flipped, so its fast verification keeps it) still stops the server.
    shard = first / "model-00002-of-00002.safetensors"
    info = shard.stat()
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(info.st_atime_ns, info.st_mtime_ns))
    (second / "model-00002-of-00002.safetensors").unlink()
    rc, output = run_fanout_role(tmp_path, fanout_base, source, port, "failing")
    assert rc != 0, output
    assert "model-00002-of-00002.safetensors: sha256" in output, output
    assert "Stop the fan-out server" in output
    assert not Path("/run/llmops-model-sync").exists()
    assert port_is_closed(port)
    assert not (second / "model-00002-of-00002.safetensors").exists()
