#!/usr/bin/env python3
"""Write a tiny random-weight model of the seed's architecture family (Qwen3-MoE), offline.

Runs inside llmops-test/vllm-cpu (it has torch, transformers and tokenizers); the harness's
build-tiny-model.sh calls it. What is real: the architecture (Qwen3MoeForCausalLM, as
transformers builds and saves it today: config.json with `dtype`, safetensors weights), a BPE
tokenizer trained here on a few KiB of text, and a ChatML chat template of the Qwen3 kind, so
vLLM loads, serves and answers chat completions through its real code paths. What is not: the
weights are random (seeded), so the text the model answers is noise.

    tiny_model.py --out DIR [--head-dim 64] [--max-position-embeddings 4096]

Sizes (defaults): 2 layers, hidden 256, 4 attention heads, 2 KV heads, head_dim 64, 4 experts
(2 per token), vocabulary 512: ~3 MiB in bf16. KV bytes per token = 2 x 2 layers x 2 KV heads x
64 x 2 bytes = 1,024 (what the preflight's arithmetic must predict). `--head-dim 16` makes a model
that vLLM's CPU attention refuses at the first request ("Unsupported CPU attention
configuration"), after /health already answered: the test of an engine that dies after startup.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

# Qwen3's ChatML template, reduced to what a chat completion needs (no tools, no thinking).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = """\
The quick brown fox jumps over the lazy dog. A model server answers requests over HTTP.
Large language models predict the next token from the tokens before it. The key value cache
keeps the attention keys and values of every token a request has seen. Tensor parallelism
splits every layer across several devices; pipeline parallelism splits the layers into stages.
Say OK. Hello, how are you today? I am fine, thank you. What is the capital of France? Paris.
One, two, three, four, five, six, seven, eight, nine, ten. Monday Tuesday Wednesday Thursday.
GPU memory is shared by the weights, the activations and the KV cache of the running requests.
"""


def build_tokenizer(vocab_size: int):
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([CORPUS] * 8, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--max-position-embeddings", type=int, default=4096)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer(args.vocab_size)
    config = Qwen3MoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        moe_intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=args.head_dim,
        num_experts=4,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        max_position_embeddings=args.max_position_embeddings,
        max_window_layers=2,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen3MoeForCausalLM(config).to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    GenerationConfig(
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_new_tokens=16,
    ).save_pretrained(args.out)
    written = sorted(p.name for p in args.out.iterdir())
    print(json.dumps({"out": str(args.out), "files": written}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
