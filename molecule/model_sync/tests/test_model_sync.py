"""The model_sync role's result on each host: user, ownership, verified files, manifest, no
partial files, the same bytes on the host that copied from the staged directory and on the host
that pulled from it (fan-out)."""

import hashlib
import itertools
import json
import re

testinfra_hosts = ["all"]

MODEL_DIR = "/home/llm/model/acme/tiny-llm"


def shard(name: str, size: int) -> bytes:
    line = f"llmops-{name}\n".encode()
    return bytes(itertools.islice(itertools.cycle(line), size))


EXPECTED = {
    "config.json": b'{"architectures": ["Qwen3MoeForCausalLM"], "torch_dtype": "bfloat16"}',
    "tokenizer/tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
    "model-00001-of-00002.safetensors": shard("model-00001-of-00002.safetensors", 3145728),
    "model-00002-of-00002.safetensors": shard("model-00002-of-00002.safetensors", 1048583),
}


def test_owner_user_exists(host):
    user = host.user("llm")
    assert user.exists
    assert user.group == "llm"
    assert user.shell == "/usr/sbin/nologin"


def test_model_files_are_in_place_with_owner_and_mode(host):
    for name, data in EXPECTED.items():
        target = host.file(f"{MODEL_DIR}/{name}")
        assert target.is_file, name
        assert target.user == "llm", name
        assert target.group == "llm", name
        assert target.mode == 0o644, name
        assert target.size == len(data), name
        assert target.sha256sum == hashlib.sha256(data).hexdigest(), name
    for directory in (
        "/home/llm/model",
        "/home/llm/model/acme",
        MODEL_DIR,
        f"{MODEL_DIR}/tokenizer",
    ):
        entry = host.file(directory)
        assert entry.is_directory, directory
        assert entry.user == "llm", directory
        assert entry.mode == 0o755, directory


def test_manifest_vouches_for_every_file(host):
    manifest = json.loads(host.file(f"{MODEL_DIR}/.llmops-manifest.json").content_string)
    assert manifest["version"] == 1
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        name: hashlib.sha256(data).hexdigest() for name, data in EXPECTED.items()
    }
    # verify: fast trusts exactly these mtimes: they must be the files' own.
    for entry in manifest["files"]:
        mtime_ns = host.check_output(
            "python3 -c 'import os, sys; print(os.stat(sys.argv[1]).st_mtime_ns)' %s",
            f"{MODEL_DIR}/{entry['path']}",
        )
        assert entry["mtime_ns"] == int(mtime_ns), entry["path"]


def test_no_partial_files_or_fanout_server_are_left(host):
    assert not host.file(f"{MODEL_DIR}/.llmops-partial").exists
    # The fan-out server's script, token and pid file went with it.
    assert not host.file("/run/llmops-model-sync").exists
    # No process runs it ([r]: grep's own command line does not match).
    running = host.run("grep -sl 'model_fanout_serve[r]' /proc/[0-9]*/cmdline")
    assert running.stdout.strip() == "", running.stdout
    assert not host.socket("tcp://0.0.0.0:8730").is_listening


def test_the_puller_copied_from_the_first_host(host):
    manifest = json.loads(host.file(f"{MODEL_DIR}/.llmops-manifest.json").content_string)
    if host.backend.get_hostname().endswith("debian12"):
        assert manifest["source"] == "/srv/model-source/tiny-llm"
    else:
        # Pulled over HTTP from the first host's fan-out server.
        assert re.fullmatch(r"http://[0-9.]+:8730", manifest["source"]), manifest["source"]
        assert not host.file("/srv/model-source").exists


# --- hf:// through the virtualenv the role installs -------------------------------------------

HUB_MODEL_DIR = "/home/llm/model/acme/tiny-hub"
HUB_EXPECTED = {
    "config.json": b'{"architectures": ["Qwen3ForCausalLM"]}',
    "model.safetensors": shard("hub-shard", 2097152),
}


def test_the_hub_client_is_installed_in_its_virtualenv_on_the_downloading_host(host):
    python = host.file("/opt/llmops/model-sync/bin/python")
    if not host.backend.get_hostname().endswith("debian12"):
        assert not python.exists  # the puller copies from the first host, it needs no client
        return
    version = host.check_output(
        "/opt/llmops/model-sync/bin/python -c "
        "'import huggingface_hub, hf_xet; print(huggingface_hub.__version__)'"
    )
    assert version.strip() == "2.4.0"


def test_the_hub_model_is_verified_on_both_hosts(host):
    manifest = json.loads(host.file(f"{HUB_MODEL_DIR}/.llmops-manifest.json").content_string)
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        name: hashlib.sha256(data).hexdigest() for name, data in HUB_EXPECTED.items()
    }
    # The revision is the commit the default branch resolved to, on the puller too.
    assert len(manifest["revision"]) == 40
    assert all(c in "0123456789abcdef" for c in manifest["revision"])
    for name, data in HUB_EXPECTED.items():
        assert host.file(f"{HUB_MODEL_DIR}/{name}").sha256sum == hashlib.sha256(data).hexdigest()
    if host.backend.get_hostname().endswith("debian12"):
        assert manifest["source"] == "hf://acme/tiny-hub"
    assert not host.file(f"{HUB_MODEL_DIR}/.llmops-partial").exists
