#!/usr/bin/env python3
"""How fast does a playbook learn that vLLM failed, or that it serves?

Compares llmops.gpu_serving.vllm_container with the usual pattern, a plain
community.docker.docker_container task followed by an ansible.builtin.uri retry loop on /health
(retries 60, delay 10), on the same stand-in vLLM image (tests/harness/standin-vllm) with the
same container configuration (the seed's flags, restart policy always).

Two measurements, each from the Docker engine's own log timestamps (``docker logs -t``) to the
moment ansible-playbook exits:

* failure: the kv_cache_too_small scenario; from the fatal log line to the playbook's failure;
* success: the seed's log; from the server's readiness ("Application startup complete.") and
  from the first ``GET /health`` answered 200 to the playbook's return.

Usage: tests/benchmarks/vllm_container_bench.py [--speed 4] [--retries 60] [--delay 10]
Needs `make harness` (the stand-in images). Talks to 127.0.0.1 only; removes its containers.
A full run takes about 12 minutes: the baseline waits retries x delay for a server that died.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from itertools import chain
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "integration")]
from seed_deployment import (  # noqa: E402
    SEED_ENGINE,
    SEED_HOST,
    SEED_OTHER_FLAGS,
    SEED_SWAP_SPACE_GIB,
)
from vllm_it import ansible_playbook, free_port  # noqa: E402

IMAGE = "llmops-test/vllm-openai:v0.8.5"
FATAL = "larger than the available KV cache memory"
READY = "Application startup complete."
HEALTH_200 = '"GET /health HTTP/1.1" 200'

# The seed's `vllm serve` command line (tests/seed_deployment.py), for the stand-in.
SEED_ARGS = [
    *("--model", "/qwen/qwen3-30b-a3b", "--served-model-name", "coder"),
    *chain.from_iterable(
        (f"--{key.replace('_', '-')}", str(value)) for key, value in SEED_ENGINE.items()
    ),
    *("--enable-chunked-prefill", "--swap-space", str(SEED_SWAP_SPACE_GIB)),
    *("--tokenizer-pool-size", "56", "--disable-custom-all-reduce"),
]


def run_playbook(workdir: Path, tasks: list[dict]) -> tuple[int, float, str]:
    """Run ``tasks`` on localhost; return (exit code, wall clock at exit, output)."""
    playbook = workdir / f"play-{uuid.uuid4().hex[:6]}.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    done = ansible_playbook(
        playbook,
        "localhost,",
        *("-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"),
        timeout=3600,
    )
    return done.returncode, time.time(), done.stdout + done.stderr


def first_timestamp(name: str, needle: str) -> float | None:
    """Engine timestamp (epoch seconds) of the first log line of ``name`` containing ``needle``."""
    logs = subprocess.run(
        ["docker", "logs", "-t", name], capture_output=True, text=True, check=False
    )
    for line in (logs.stdout + logs.stderr).splitlines():
        if needle in line:
            stamp = line.split(" ", 1)[0]
            match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", stamp)
            if match:
                fraction = float("0" + (match.group(2) or ".0"))
                base = datetime.strptime(match.group(1) + "+0000", "%Y-%m-%dT%H:%M:%S%z")
                return base.timestamp() + fraction
    return None


def module_task(name: str, port: int, model_dir: Path, scenario: str, speed: str) -> dict:
    return {
        "name": "Run vLLM with llmops.gpu_serving.vllm_container",
        "llmops.gpu_serving.vllm_container": {
            "name": name,
            "image": IMAGE,
            "pull": "never",
            "gpus": "",
            "model_host_path": str(model_dir),
            "model_container_path": "/qwen/qwen3-30b-a3b",
            "port": port,
            "bind_address": "127.0.0.1",
            "ipc_mode": "host",
            "restart_policy": "always",
            "env": {"STANDIN_SPEED": speed, "STANDIN_SCENARIO": scenario},
            "served_model_name": ["coder"],
            **SEED_ENGINE,
            **SEED_OTHER_FLAGS,
            "host_cuda_version": SEED_HOST["host_cuda_version"],
            "ready_timeout": 900,
            # Keep the failed container so that its log can be timed.
            "rollback": False,
        },
    }


def baseline_tasks(
    name: str, port: int, model_dir: Path, scenario: str, *, speed: str, retries: int, delay: int
) -> list[dict]:
    return [
        {
            "name": "Start the vLLM container",
            "community.docker.docker_container": {
                "name": name,
                "image": IMAGE,
                "command": SEED_ARGS,
                "env": {"STANDIN_SPEED": speed, "STANDIN_SCENARIO": scenario},
                "published_ports": [f"127.0.0.1:{port}:8000"],
                "volumes": [f"{model_dir}:/qwen/qwen3-30b-a3b"],
                "ipc_mode": "host",
                "restart_policy": "always",
                "state": "started",
            },
        },
        {
            "name": "Wait until /health answers",
            "ansible.builtin.uri": {"url": f"http://127.0.0.1:{port}/health"},
            "register": "health",
            "until": "health.status == 200",
            "retries": retries,
            "delay": delay,
        },
    ]


def measure(label: str, tasks: list[dict], name: str, workdir: Path, marks: dict[str, str]) -> dict:
    print(f"[bench] {label} ...", flush=True)
    started = time.time()
    rc, ended, output = run_playbook(workdir, tasks)
    result = {"label": label, "rc": rc, "playbook_seconds": round(ended - started, 2)}
    for key, needle in marks.items():
        stamp = first_timestamp(name, needle)
        result[key] = round(ended - stamp, 2) if stamp is not None else None
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    if result.get("from_fatal_line") is None and "from_fatal_line" in marks:
        result["output_tail"] = output[-2000:]
    print(f"[bench] {label}: {result}", flush=True)
    return result


def ratio(baseline: float | None, ours: float | None) -> str:
    if not baseline or not ours:
        return "n/a"
    return f"{baseline / ours:.1f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--speed", default="4", help="stand-in replay speed factor (1 = real timing)"
    )
    parser.add_argument("--retries", type=int, default=60, help="baseline uri retries")
    parser.add_argument("--delay", type=int, default=10, help="baseline uri delay (s)")
    parser.add_argument(
        "--output", default=str(REPO_ROOT / "tests/output/bench/vllm_container_bench.json")
    )
    args = parser.parse_args()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="llmops-bench-") as tmp:
        workdir = Path(tmp)
        model_dir = workdir / "qwen3-30b-a3b"
        model_dir.mkdir()
        (model_dir / "config.json").write_text("{}\n")
        tag = uuid.uuid4().hex[:6]
        runs = [
            ("failure_module", "kv_cache_too_small", True),
            ("failure_baseline", "kv_cache_too_small", False),
            ("success_module", "v0_success", True),
            ("success_baseline", "v0_success", False),
        ]
        for key, scenario, ours in runs:
            name = f"llmops-bench-{key.replace('_', '-')}-{tag}"
            port = free_port()
            if ours:
                tasks = [module_task(name, port, model_dir, scenario, args.speed)]
            else:
                tasks = baseline_tasks(
                    name,
                    port,
                    model_dir,
                    scenario,
                    speed=args.speed,
                    retries=args.retries,
                    delay=args.delay,
                )
            if scenario == "v0_success":
                marks = {"from_ready_line": READY, "from_first_health_200": HEALTH_200}
            else:
                marks = {"from_fatal_line": FATAL}
            results[key] = measure(key, tasks, name, workdir, marks)

    fail_ours = results["failure_module"]["from_fatal_line"]
    fail_base = results["failure_baseline"]["from_fatal_line"]
    ready_ours = results["success_module"]["from_ready_line"]
    ready_base = results["success_baseline"]["from_ready_line"]
    health_ours = results["success_module"]["from_first_health_200"]
    health_base = results["success_baseline"]["from_first_health_200"]
    summary = {
        "speed": args.speed,
        "baseline": f"docker_container + uri retries={args.retries} delay={args.delay}",
        "fatal_line_to_failure_s": {
            "module": fail_ours,
            "baseline": fail_base,
            "ratio": ratio(fail_base, fail_ours),
        },
        "ready_line_to_return_s": {
            "module": ready_ours,
            "baseline": ready_base,
            "ratio": ratio(ready_base, ready_ours),
        },
        "first_health_200_to_return_s": {
            "module": health_ours,
            "baseline": health_base,
            "ratio": ratio(health_base, health_ours),
        },
        "runs": results,
    }
    print()
    print(f"stand-in speed factor {args.speed}; baseline: {summary['baseline']}")
    print(f"{'measure':38} {'module':>10} {'baseline':>10} {'ratio':>8}")
    for key in (
        "fatal_line_to_failure_s",
        "ready_line_to_return_s",
        "first_health_200_to_return_s",
    ):
        row = summary[key]
        print(f"{key:38} {row['module']!s:>10} {row['baseline']!s:>10} {row['ratio']:>8}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
