"""The reference deployment's figures, written once for the tests that check against them.

The seed (../shared/seed/qwen3-30b-a3b-vllm-deployment.md, README "Worked example"):
Qwen3-30B-A3B on 4 x 22 GB cards (RTX 2080 Ti, 22528 MiB, vLLM sees 21.66 GiB each), vLLM
0.8.5, TP 4, fp16, 32K context, block 32, 0.93 of each card, 4096 batched tokens, 16 GiB of
swap. Its log reported 4.30 GiB KV cache, 5867 GPU blocks and 5.73x concurrency for 32768
tokens (facts/vllm.md).
"""

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The engine options of the seed's `vllm serve` command line, as the modules name them.
SEED_ENGINE = {
    "tensor_parallel_size": 4,
    "dtype": "half",
    "max_model_len": 32768,
    "block_size": 32,
    "gpu_memory_utilization": 0.93,
    "max_num_batched_tokens": 4096,
}
SEED_SWAP_SPACE_GIB = 16
# config.json of Qwen/Qwen3-30B-A3B, and the metadata.total_size of its safetensors index.
QWEN3_30B_A3B_CONFIG = json.loads((FIXTURES / "model_configs" / "qwen3-30b-a3b.json").read_text())
QWEN3_30B_A3B_WEIGHTS = 61_064_245_248
# nvidia-smi's memory.total of the seed's cards, and what vLLM sees of one (total_gpu_memory).
SEED_GPUS = [{"index": i, "memory_total_mib": 22528} for i in range(4)]
SEED_GPU_MEMORY_GIB = 21.66
# The rest of the seed's `vllm serve` flags, as vllm_container names them.
SEED_OTHER_FLAGS = {
    "enable_chunked_prefill": True,
    "swap_space": SEED_SWAP_SPACE_GIB,
    "tokenizer_pool_size": 56,
    "disable_custom_all_reduce": True,
}
# What nvidia-smi says of the seed's host: its driver and the CUDA version that driver supports.
SEED_HOST = {"host_cuda_version": "12.4", "host_driver_version": "550.144.03"}
