#!/usr/bin/env python3
"""The end of `make demo`: the verified serving report of the sandbox host, and one real HTTP
answer from its endpoint on this machine's 127.0.0.1.

    sandbox_summary.py REPORT_JSON_FILE BASE_URL API_KEY
"""

from __future__ import annotations

import json
import sys
import urllib.request


def print_benchmark(benchmark: dict | None) -> None:
    """The benchmark figures the report keeps (playbooks/benchmark.yml), one line per level."""
    if not benchmark:
        return
    settings = benchmark.get("settings") or {}
    print(
        f"Serving benchmark ({benchmark.get('tool')}, {settings.get('num_prompts')} prompts of "
        f"{settings.get('input_len')} tokens, {settings.get('output_len')} out, measured "
        f"{benchmark.get('measured_at')}):"
    )
    if "vllm-cpu" in str(benchmark.get("image")):
        print("  CPU figures of a random-weight model on this machine, not a GPU host's speed")
    print("  concurrency | completed | failed | output tok/s | TTFT p50/p99 ms | TPOT p50 ms")
    for level in benchmark.get("levels") or []:
        ttft, tpot = level.get("ttft_ms") or {}, level.get("tpot_ms") or {}
        print(
            f"  {level['concurrency']:>11} | {level['completed']:>9} | {level['failed']:>6} | "
            f"{level.get('output_throughput')} | {ttft.get('p50')}/{ttft.get('p99')} | "
            f"{tpot.get('p50')}"
        )
    verdict = benchmark.get("verdict") or {}
    if verdict and not verdict.get("passed", True):
        print(f"  regression: {'; '.join(verdict.get('violations') or [])}")


def main() -> int:
    report_path, base_url, api_key = sys.argv[1:4]
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    container, memory = report["container"], report["memory"]
    print("Verified report (/etc/llmops/serving.json in the sandbox):")
    print(
        f"  container {container['name']} from {container['image']} (vLLM "
        f"{container['vllm_version']}), ready in {report['ready_seconds']} s, "
        f"smoke test {report['smoke_test']}"
    )
    driver, model = report["driver"], report["model"]
    print(
        f"  driver {driver['version']} (CUDA {driver['cuda_version']}), {driver['gpus']} GPUs; "
        f"weights {model['files']} files, {model['bytes']} bytes, manifest sha256 "
        f"{(model['manifest_sha256'] or '-')[:12]}"
    )
    print(
        f"  KV cache {memory['kv_cache_gib']} GiB per GPU, {memory['gpu_blocks']} blocks, "
        f"{memory['kv_cache_tokens']} tokens: {memory['max_concurrency']} requests of "
        f"{memory['max_model_len']} tokens at once"
    )
    unlogged = []
    for figure, row in sorted((report.get("plan_comparison") or {}).items()):
        if row["measured"] is None:
            unlogged.append(figure)
            continue
        print(
            f"  plan vs vLLM's log, {figure}: planned {row['planned']}, logged {row['measured']}"
            f" ({row['error_pct']} %)"
        )
    if unlogged:
        print(f"  planned but not in this engine's log: {', '.join(unlogged)}")
    if "vllm-cpu" in container["image"]:
        print(
            f"  engine: the real vLLM {container['vllm_version']} (CPU build) serving a tiny "
            "random-weight Qwen3-MoE: the answer below comes from it, and its text is noise"
        )
    else:
        print("  engine: the stand-in replaying the seed's startup log (DEMO_ENGINE=replay)")
    print_benchmark(report.get("benchmark"))
    url = base_url + "/v1/chat/completions"
    body = {
        "model": "coder",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
    )
    print(f"A real HTTP answer from the endpoint on this machine (POST {url}):")
    with urllib.request.urlopen(request, timeout=120) as answer:
        print(f"  HTTP {answer.status}: {answer.read().decode()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
