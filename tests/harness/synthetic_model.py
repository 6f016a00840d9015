#!/usr/bin/env python3
"""Write a small stand-in of Qwen3-30B-A3B's model directory for the sandbox and the site scenario.

What is real: config.json (the model's own, tests/fixtures/model_configs/qwen3-30b-a3b.json) and
the index's metadata.total_size (61,064,245,248 bytes, the real weights), so the preflight plans
exactly what it would plan for the real model on the seed's GPUs. What is simulated: the shards
are valid safetensors files of the real names but a few MiB of deterministic bytes each, so the
directory syncs in seconds (model_sync copies and hashes them like any weights).

    synthetic_model.py [--out DIR] [--shard-mib N]

Idempotent: files whose content would not change are left alone (their mtime too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "fixtures" / "model_configs" / "qwen3-30b-a3b.json"
DEFAULT_OUT = HERE.parent / "output" / "models" / "qwen" / "qwen3-30b-a3b"
SHARDS = 16
# metadata.total_size of Qwen/Qwen3-30B-A3B's model.safetensors.index.json.
REAL_TOTAL_SIZE = 61_064_245_248


def deterministic_bytes(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


def safetensors_file(tensors: dict[str, int], seed: str) -> bytes:
    """A valid safetensors file: fp16 1-D tensors of the given element counts."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, elements in tensors.items():
        nbytes = elements * 2
        header[name] = {
            "dtype": "F16",
            "shape": [elements],
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + deterministic_bytes(seed, offset)


def build(out: Path, shard_mib: int) -> list[str]:
    config = json.loads(CONFIG.read_text())
    layers = config["num_hidden_layers"]
    per_shard = -(-layers // SHARDS)
    weight_map: dict[str, str] = {}
    files: dict[str, bytes] = {"config.json": CONFIG.read_bytes()}
    elements = shard_mib * 1024 * 1024 // 2
    for shard in range(SHARDS):
        name = f"model-{shard + 1:05d}-of-{SHARDS:05d}.safetensors"
        tensors = {}
        for layer in range(shard * per_shard, min(layers, (shard + 1) * per_shard)):
            tensor = f"model.layers.{layer}.self_attn.o_proj.weight"
            tensors[tensor] = elements // per_shard
            weight_map[tensor] = name
        if shard == SHARDS - 1:
            tensors["lm_head.weight"] = 1024
            weight_map["lm_head.weight"] = name
        files[name] = safetensors_file(tensors, name)
    index = {"metadata": {"total_size": REAL_TOTAL_SIZE}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = (json.dumps(index, indent=2) + "\n").encode()
    files["generation_config.json"] = (
        json.dumps({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]})
        + "\n"
    ).encode()
    files["README.md"] = (
        b"# Qwen3-30B-A3B (llmops.gpu_serving test stand-in)\n\n"
        b"config.json and the index's total_size are the real model's; the shards are small\n"
        b"placeholders written by tests/harness/synthetic_model.py.\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = out / name
        if path.is_file() and path.read_bytes() == content:
            continue
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
        written.append(name)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--shard-mib", type=int, default=2, help="size of each shard (MiB)")
    args = parser.parse_args()
    written = build(args.out, args.shard_mib)
    state = f"wrote {len(written)} files" if written else "up to date"
    print(f"[synthetic-model] {args.out}: {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
