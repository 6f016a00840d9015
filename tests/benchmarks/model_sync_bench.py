#!/usr/bin/env python3
"""Benchmark llmops.gpu_serving.model_sync against `rsync -a` and `cp -r` on the same disk.

Creates a synthetic model (shards of incompressible bytes plus small JSON files) of --size-gib
in a temporary directory, then times, each into a fresh destination on the same file system:

    cp -r            (and cp -r followed by sync, i.e. until the data is on disk)
    rsync -a         (and rsync -a followed by sync)
    model_sync       first copy: sha256 of every byte while copying, fsync of every file before
                     its rename, manifest; the module's own code (module_utils.model_sync_run)
                     called in this process, without Ansible's per-task overhead
    model_sync       no-op re-run (verify: fast)
    model_sync       re-run with verify: full (rehash everything)

and prints wall times, throughput and the ratio to rsync -a. Caches are not dropped (that
would disturb everything else on the machine): the source is read from the page cache as far as
it fits, the same for every tool, and the runs alternate in the order given by --order.

    python tests/benchmarks/model_sync_bench.py --size-gib 4
    python tests/benchmarks/model_sync_bench.py --size-gib 2 --dir /mnt/nvme/tmp --keep
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "collections"))

from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_sync_run import (  # noqa: E402
    sync_model,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_transfer import (  # noqa: E402
    Ownership,
)

GIB = 1024**3
CHUNK = 64 * 1024 * 1024


def make_model(root: Path, size_gib: float, shards: int) -> int:
    """Shards of random bytes (incompressible, like weights) and a few small files."""
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"architectures": ["Qwen3MoeForCausalLM"]}\n')
    (root / "generation_config.json").write_text('{"do_sample": true}\n')
    (root / "tokenizer.json").write_bytes(os.urandom(7 * 1024 * 1024))
    shard_size = int(size_gib * GIB) // shards
    block = os.urandom(CHUNK)
    for index in range(1, shards + 1):
        with open(root / f"model-{index:05d}-of-{shards:05d}.safetensors", "wb") as handle:
            left = shard_size
            while left:
                # Vary each block so no two shards (or blocks) are identical.
                piece = (index.to_bytes(4, "little") + block)[: min(CHUNK, left)]
                handle.write(piece)
                left -= len(piece)
    subprocess.run(["sync"], check=True)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def timed(command: list[str], sync_after: bool) -> tuple[float, float]:
    started = time.perf_counter()
    subprocess.run(command, check=True)
    copied = time.perf_counter() - started
    if sync_after:
        subprocess.run(["sync"], check=True)
    return copied, time.perf_counter() - started


def run_model_sync(source: Path, dest: Path, verify: str, workers: int) -> tuple[float, dict]:
    options = {
        "dest": str(dest),
        "source": str(source),
        "revision": "",
        "verify": verify,
        "include": [],
        "exclude": [],
        "min_free_bytes": 0,
        "workers": workers,
        "timeout": 60,
    }
    started = time.perf_counter()
    result = sync_model(options, False, Ownership())
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=4.0, help="model size (default 4)")
    parser.add_argument("--shards", type=int, default=8, help="weight shards (default 8)")
    parser.add_argument("--dir", default=None, help="work directory (default: system temp)")
    parser.add_argument("--workers", type=int, default=0, help="model_sync workers (0: CPUs)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="model-sync-bench-", dir=args.dir))
    try:
        source = work / "source"
        print(f"creating a {args.size_gib:g} GiB model with {args.shards} shards in {source} ...")
        total = make_model(source, args.size_gib, args.shards)
        free = shutil.disk_usage(work).free
        if free < 4 * total:
            print(f"warning: {free / GIB:.1f} GiB free, the runs need about {4 * total / GIB:.1f}")

        rows: list[tuple[str, float]] = []

        def fresh(name: str) -> Path:
            target = work / name
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            return target

        cp_copy, cp_synced = timed(["cp", "-r", str(source), str(fresh("cp"))], sync_after=True)
        rows += [("cp -r", cp_copy), ("cp -r + sync", cp_synced)]
        shutil.rmtree(work / "cp")

        rsync_copy, rsync_synced = timed(
            ["rsync", "-a", f"{source}/", f"{fresh('rsync')}/"], sync_after=True
        )
        rows += [("rsync -a", rsync_copy), ("rsync -a + sync", rsync_synced)]
        shutil.rmtree(work / "rsync")

        dest = fresh("model_sync")
        first, result = run_model_sync(source, dest, "fast", args.workers)
        assert result["files_transferred"] == result["files_total"], result
        rows.append(("model_sync (sha256 + fsync)", first))
        noop, result = run_model_sync(source, dest, "fast", args.workers)
        assert result["changed"] is False, result
        rows.append(("model_sync no-op re-run", noop))
        full, result = run_model_sync(source, dest, "full", args.workers)
        assert result["changed"] is False, result
        assert result["files_verified"] == result["files_total"], result
        rows.append(("model_sync re-run, verify: full", full))

        print()
        print(
            f"model: {total / GIB:.2f} GiB in {result['files_total']} files, {os.cpu_count()} CPUs"
        )
        print(f"{'':34} {'seconds':>8} {'GiB/s':>7} {'vs rsync -a':>12}")
        for label, seconds in rows:
            rate = total / GIB / seconds if seconds else float("inf")
            ratio = seconds / rsync_copy
            print(f"{label:34} {seconds:8.2f} {rate:7.2f} {ratio:11.2f}x")
        print()
        print(
            f"first copy, model_sync / rsync -a: {first / rsync_copy:.2f}x "
            f"(model_sync / (rsync -a + sync): {first / rsync_synced:.2f}x)"
        )
        print(f"no-op re-run: {noop:.3f} s")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
