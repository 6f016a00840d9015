#!/usr/bin/env python3
"""End-to-end benchmark of the model_sync task: ansible-playbook against `rsync -a`.

model_sync_bench.py times the module's own code; this one times what an operator waits for:
``ansible-playbook`` with one model_sync task on localhost (connection local), action plugin,
async start-up, progress polling and all, against ``rsync -a`` of the same synthetic model into
a fresh directory, in the same run, alternating, ``--runs`` times. Then a no-op re-sync (the
model already in place) against a playbook that runs one no-op task (``ansible.builtin.ping``),
which is the floor of any task.

    python tests/benchmarks/model_sync_playbook_bench.py --size-gib 2 --runs 3

Prints every run and the medians; the ratios are median model_sync / median rsync -a and
median no-op re-sync / median one-task playbook.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_sync_bench import GIB, make_model  # noqa: E402


def playbook(work: Path, name: str, *tasks: dict) -> Path:
    path = work / f"{name}.yml"
    play = [{"name": name, "hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}]
    path.write_text(json.dumps(play))
    return path


def run_playbook(path: Path) -> float:
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        str(path),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{path.name} failed:\n{done.stdout}\n{done.stderr}")
    module = re.search(r"MODULE_SECONDS=([0-9.]+)", done.stdout)
    return seconds, float(module[1]) if module else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0, help="model size (default 2)")
    parser.add_argument("--shards", type=int, default=8, help="weight shards (default 8)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--dir", default=None, help="work directory (default: system temp)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="model-sync-playbook-bench-", dir=args.dir))
    try:
        source = work / "source"
        print(f"creating a {args.size_gib:g} GiB model with {args.shards} shards ...", flush=True)
        total = make_model(source, args.size_gib, args.shards)
        dest = work / "model_sync"
        sync_task = {
            "name": "Sync the model",
            "llmops.gpu_serving.model_sync": {"source": str(source), "dest": str(dest)},
            "register": "synced",
        }
        # The module's own wall time, to split the playbook's time into module and controller.
        show = {
            "name": "Show",
            "ansible.builtin.debug": {"msg": "MODULE_SECONDS={{ synced.seconds }}"},
        }
        sync_play = playbook(work, "sync", sync_task, show)
        ping_play = playbook(work, "ping", {"name": "Ping", "ansible.builtin.ping": {}})
        rows: dict[str, list[float]] = {
            k: [] for k in ("rsync", "sync", "sync_module", "noop", "noop_module", "ping")
        }
        for run in range(1, args.runs + 1):
            for target in (work / "rsync", dest):
                shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            started = time.perf_counter()
            subprocess.run(["rsync", "-a", f"{source}/", f"{work / 'rsync'}/"], check=True)
            rows["rsync"].append(time.perf_counter() - started)
            subprocess.run(["sync"], check=True)
            for key in ("sync", "noop"):
                seconds, module = run_playbook(sync_play)
                rows[key].append(seconds)
                rows[f"{key}_module"].append(module)
            rows["ping"].append(run_playbook(ping_play)[0])
            print(
                f"run {run}: rsync -a {rows['rsync'][-1]:.2f} s, model_sync playbook "
                f"{rows['sync'][-1]:.2f} s (module {rows['sync_module'][-1]:.2f} s), no-op "
                f"re-sync {rows['noop'][-1]:.2f} s (module {rows['noop_module'][-1]:.3f} s), "
                f"one-task playbook {rows['ping'][-1]:.2f} s",
                flush=True,
            )
        median = {key: statistics.median(values) for key, values in rows.items()}
        print()
        print(f"model: {total / GIB:.2f} GiB, {os.cpu_count()} CPUs, median of {args.runs}")
        print(
            f"first sync (ansible-playbook) {median['sync']:.2f} s vs rsync -a "
            f"{median['rsync']:.2f} s: {median['sync'] / median['rsync']:.2f}x"
        )
        print(
            f"controller overhead of the first sync (playbook - module): "
            f"{median['sync'] - median['sync_module']:.2f} s"
        )
        print(
            f"no-op re-sync {median['noop']:.2f} s vs one-task playbook {median['ping']:.2f} s: "
            f"{median['noop'] / median['ping']:.2f}x"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
