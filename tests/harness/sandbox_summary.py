#!/usr/bin/env python3
"""The end of `make demo`: the verified serving report of the sandbox host, and one real HTTP
answer from its endpoint on this machine's 127.0.0.1.

    sandbox_summary.py REPORT_JSON_FILE BASE_URL API_KEY
"""

from __future__ import annotations

import json
import sys
import urllib.request


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
