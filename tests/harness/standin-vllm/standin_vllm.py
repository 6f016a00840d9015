#!/usr/bin/env python3
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in for the vLLM OpenAI server, for tests on machines without GPUs.

It behaves towards the outside like vLLM's server of the version baked into the image
(STANDIN_VLLM_VERSION):

* parses the command line like that version's argparse (a flag the version does not have ->
  ``error: unrecognized arguments: ...``, exit 2);
* replays a real vLLM startup log (tests/fixtures/vllm_logs, verbatim) chosen by
  STANDIN_SCENARIO, with the gaps between its timestamps (divided by STANDIN_SPEED);
* for a failure scenario exits non-zero after the log; for a success scenario opens the port
  only then (vLLM refuses connections until the engine is ready) and serves /health,
  /v1/models, /version, /metrics (with vllm:cache_config_info) and /v1/chat/completions.

Lines that are not in the replayed fixture are written by the stand-in itself, in the
version's format: the version banner and the arguments at the start, "Starting vLLM API
server", uvicorn's start-up and access lines. Python standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import flag_budget

HERE = Path(__file__).resolve().parent
LOGS = Path(os.environ.get("STANDIN_LOG_DIR", HERE / "logs"))
SCENARIOS = json.loads((HERE / "scenarios.json").read_text(encoding="utf-8"))
# The seed model's config.json (tests/fixtures/model_configs), for a mounted model directory
# that carries no geometry (the integration tests mount one with only "architectures").
SEED_CONFIG = HERE / "qwen3-30b-a3b.json"
VERSION = os.environ.get("STANDIN_VLLM_VERSION", "0.8.5")
TIMESTAMP_RE = re.compile(r"\b(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\b")
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
BLOCK_SIZES = (1, 8, 16, 32, 64, 128)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:4])


RELEASE = version_tuple(VERSION)


def supports(added: tuple[int, ...] | None = None, removed: tuple[int, ...] | None = None) -> bool:
    """Does this vLLM version have a flag added in ``added`` and removed in ``removed``?"""
    if added is not None and added > RELEASE:
        return False
    return not (removed is not None and removed <= RELEASE)


def speed() -> float:
    try:
        return max(float(os.environ.get("STANDIN_SPEED", "1")), 0.001)
    except ValueError:
        return 1.0


def now_stamp() -> str:
    return time.strftime("%m-%d %H:%M:%S")


def api_prefix() -> str:
    # From 0.10.1 the API server's lines carry "(APIServer pid=N) " (facts/vllm.md).
    return f"(APIServer pid={os.getpid()}) " if RELEASE >= (0, 10, 1) else ""


def vllm_line(message: str, source: str = "api_server.py:1043", level: str = "INFO") -> str:
    return f"{api_prefix()}{level} {now_stamp()} [{source}] {message}"


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Parser(argparse.ArgumentParser):
    """argparse with vLLM's FlexibleArgumentParser habit: --max_model_len == --max-model-len."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        normalized = []
        for arg in args:
            if arg.startswith("--") and "_" in arg.split("=", 1)[0]:
                key, sep, value = arg.partition("=")
                normalized.append(key.replace("_", "-") + sep + value)
            else:
                normalized.append(arg)
        return super().parse_args(normalized, namespace)


def build_parser(prog: str, serve: bool) -> argparse.ArgumentParser:
    parser = Parser(prog=prog)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default="facebook/opt-125m")
    parser.add_argument("--served-model-name", nargs="+", default=None)
    parser.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    parser.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--max-num-batched-tokens", type=int, default=None)
    parser.add_argument("--max-num-seqs", type=int, default=None)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    if RELEASE < (0, 12):
        parser.add_argument("--block-size", type=int, choices=BLOCK_SIZES, default=None)
    else:
        parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--enable-chunked-prefill", action="store_true", default=None)
    parser.add_argument("--disable-custom-all-reduce", action="store_true")
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--enable-prefix-caching", action="store_true")
    parser.add_argument("--kv-cache-dtype", default="auto")
    parser.add_argument("--hf-overrides", default=None)
    parser.add_argument("--generation-config", default="auto")
    parser.add_argument("--uvicorn-log-level", default="info")
    parser.add_argument("--disable-uvicorn-access-log", action="store_true")
    # Flags that came or went (facts/vllm.md "The seed's flags by version"; vllm PR #20968
    # removed the tokenizer pool for 0.10.0, PR #28006 --rope-scaling for 0.11.1).
    if supports(removed=(0, 18)):
        parser.add_argument("--swap-space", type=float, default=4)
    if supports(removed=(0, 10, 0)):
        parser.add_argument("--tokenizer-pool-size", type=int, default=0)
    if supports(removed=(0, 11, 1)):
        parser.add_argument("--rope-scaling", type=json.loads, default=None)
    if supports(added=(0, 10, 2)):
        parser.add_argument("--kv-cache-memory", type=int, default=None)
    # facts/vllm.md "Versions": requests are logged with their prompt at INFO unless
    # --disable-log-requests (removed in 0.17); later versions log only with
    # --enable-log-requests.
    if supports(removed=(0, 17)):
        parser.add_argument("--disable-log-requests", action="store_true")
    else:
        parser.add_argument("--enable-log-requests", action="store_true")
    return parser


def parse_cli(argv: list[str], prog: str) -> argparse.Namespace:
    serve = prog == "vllm"
    if serve:
        if not argv or argv[0] != "serve":
            top = argparse.ArgumentParser(prog="vllm")
            top.add_argument("subcommand", choices=["serve"])
            top.parse_args(argv[:1])
        argv = argv[1:]
    # `vllm serve MODEL --flags`: the model tag comes first, as vLLM's serve subcommand reads it.
    model_tag = argv.pop(0) if serve and argv and not argv[0].startswith("-") else None
    args = build_parser(prog, serve).parse_args(argv)
    if model_tag:
        args.model = model_tag
    return args


def log_timeline(name: str, limit: int | None = None) -> list[tuple[float, str]]:
    """(seconds to wait before the line, line) for a fixture, from its own timestamps."""
    lines = (LOGS / name).read_text(encoding="utf-8").splitlines()
    if limit is not None:
        lines = lines[:limit]
    timeline: list[tuple[float, str]] = []
    previous: float | None = None
    for line in lines:
        match = TIMESTAMP_RE.search(line)
        gap = 0.0
        if match:
            stamp = (
                int(match[2]) * 86400 + int(match[3]) * 3600 + int(match[4]) * 60 + int(match[5])
            )
            if previous is not None and 0 < stamp - previous < 120:
                gap = float(stamp - previous)
            previous = stamp
        timeline.append((gap, line))
    return timeline


def pause(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds / speed())


def model_missing(model: str) -> bool:
    if os.environ.get("STANDIN_SKIP_MODEL_CHECK") == "1" or not model.startswith("/"):
        return False
    return not (Path(model) / "config.json").is_file()


def model_config(args: argparse.Namespace) -> dict:
    """The mounted model's config.json when it has the geometry, else the seed model's."""
    try:
        config = json.loads((Path(args.model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if "num_hidden_layers" in (config.get("text_config") or config):
        return config
    return json.loads(SEED_CONFIG.read_text(encoding="utf-8"))


def flags_in_effect(args: argparse.Namespace) -> dict:
    """The flags as vLLM 0.8.5 resolves them (its defaults where a flag is not given)."""
    config = model_config(args)
    return {
        "tensor_parallel_size": args.tensor_parallel_size,
        "dtype": args.dtype,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        # V0 on CUDA: block size 16 unless given (vllm/engine/arg_utils.py of 0.8.5).
        "block_size": args.block_size or 16,
        "max_model_len": args.max_model_len or int(config.get("max_position_embeddings", 0)),
        "swap_space": getattr(args, "swap_space", 0) or 0,
        "kv_cache_dtype": args.kv_cache_dtype,
    }


class State:
    args: argparse.Namespace
    names: list[str]
    scenario: dict
    blocks: tuple[int, int] | None = None
    started = time.time()


def metrics_text() -> str:
    args = State.args
    scenario = State.scenario
    gpu_blocks, cpu_blocks = State.blocks or (
        scenario.get("num_gpu_blocks"),
        scenario.get("num_cpu_blocks", "None"),
    )
    blocks = os.environ.get("STANDIN_NUM_GPU_BLOCKS") or str(gpu_blocks)
    block_size = args.block_size or 16
    swap = getattr(args, "swap_space", 0) or 0
    labels = {
        "block_size": str(block_size),
        "cache_dtype": args.kv_cache_dtype,
        "enable_prefix_caching": str(bool(args.enable_prefix_caching)),
        "gpu_memory_utilization": str(args.gpu_memory_utilization),
        "num_cpu_blocks": str(cpu_blocks),
        "num_gpu_blocks": blocks,
        "num_gpu_blocks_override": "None",
        "sliding_window": "None",
        "swap_space": str(int(swap)) if float(swap).is_integer() else str(swap),
    }
    rendered = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    name = State.names[0]
    return (
        "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
        "# TYPE vllm:cache_config_info gauge\n"
        f"vllm:cache_config_info{{{rendered}}} 1.0\n"
        "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{model_name="{name}"}} 0.0\n'
        # The load gauges as vLLM 0.8.x serves them (vllm-project/production-stack#318's page):
        # an idle stand-in, nothing waiting, an empty KV cache.
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{model_name="{name}"}} 0.0\n'
        "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        f'vllm:gpu_cache_usage_perc{{model_name="{name}"}} 0.0\n'
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "uvicorn"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if not State.args.disable_uvicorn_access_log:
            phrase = {200: "OK", 401: "Unauthorized", 404: "Not Found", 400: "Bad Request"}
            emit(
                f"{api_prefix()}INFO:     {self.client_address[0]}:{self.client_address[1]} - "
                f'"{self.command} {self.path} HTTP/1.1" {status} {phrase.get(status, "")}'
            )

    def _json(self, status: int, data: object) -> None:
        self._send(status, json.dumps(data).encode())

    def _authorized(self) -> bool:
        key = State.args.api_key or os.environ.get("VLLM_API_KEY")
        if not key or not self.path.startswith("/v1"):
            return True
        if self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._json(401, {"error": "Unauthorized"})
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path == "/health":
            self._send(200, b"")
        elif self.path == "/version":
            self._json(200, {"version": VERSION})
        elif self.path == "/metrics":
            self._send(200, metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif self.path == "/v1/models":
            created = int(State.started)
            data = [
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": State.args.model,
                    "parent": None,
                    "max_model_len": State.args.max_model_len,
                }
                for name in State.names
            ]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"object": "error", "message": "invalid JSON", "code": 400})
            return
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
            return
        model = request.get("model")
        if model not in State.names:
            self._json(
                404,
                {
                    "object": "error",
                    "message": f"The model `{model}` does not exist.",
                    "type": "NotFoundError",
                    "param": None,
                    "code": 404,
                },
            )
            return
        if os.environ.get("STANDIN_CHAT_TEMPLATE") == "missing":
            # A model whose tokenizer has no chat template: vLLM is ready and lists it, and every
            # chat request fails (body as a vLLM 0.8-era server answered it, quoted in
            # tests/unit/plugins/module_utils/test_vllm_container.py).
            self._json(400, CHAT_TEMPLATE_MISSING)
            return
        messages = request.get("messages") or []
        log_request(messages, request)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        content = f"stand-in vLLM {VERSION}: {len(messages)} message(s) received."
        completion_tokens = len(content.split())
        self._json(
            200,
            {
                "id": "chatcmpl-standin-0",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


def log_request(messages: list, request: dict) -> None:
    """The request log lines of vLLM 0.8.5, prompt included (the format of the real fixture
    tests/fixtures/vllm_logs/v1_0.8.x_request_logs_serving.log): a prompt can quote any error
    message, and the launcher must not read it as the engine's."""
    args = State.args
    if getattr(args, "disable_log_requests", False) or not (
        getattr(args, "enable_log_requests", False) or supports(removed=(0, 17))
    ):
        return
    request_id = f"chatcmpl-{os.urandom(16).hex()}"
    prompt = "".join(
        f"<|im_start|>{m.get('role', 'user')}\n{m.get('content', '')}<|im_end|>\n" for m in messages
    )
    prompt += "<|im_start|>assistant\n"
    params = (
        f"SamplingParams(n=1, temperature={request.get('temperature', 1.0)}, "
        f"max_tokens={request.get('max_tokens')})"
    )
    emit(
        vllm_line(
            f"Received request {request_id}: prompt: {prompt!r}, params: {params}, "
            "prompt_token_ids: None, lora_request: None, prompt_adapter_request: None.",
            "logger.py:39",
        )
    )
    emit(vllm_line(f"Added request {request_id}.", "async_llm.py:252"))


CHAT_TEMPLATE_MISSING = {
    "object": "error",
    "message": "As of transformers v4.44, default chat template is no longer allowed, so you "
    "must provide a chat template if the tokenizer does not define one. None",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}


def serve(args: argparse.Namespace) -> None:
    host = args.host or "0.0.0.0"
    emit(vllm_line(f"Starting vLLM API server on http://{host}:{args.port}", "api_server.py:1081"))
    server = ThreadingHTTPServer((host, args.port), Handler)
    server.daemon_threads = True
    emit(f"{api_prefix()}INFO:     Started server process [{os.getpid()}]")
    emit(f"{api_prefix()}INFO:     Waiting for application startup.")
    emit(f"{api_prefix()}INFO:     Application startup complete.")
    server.serve_forever()


def main(prog: str) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    args = parse_cli(sys.argv[1:], prog)
    name = os.environ.get("STANDIN_SCENARIO") or os.environ.get("STANDIN_DEFAULT_SCENARIO")
    if model_missing(args.model):
        name = "model_not_found"
    if name not in SCENARIOS:
        emit(f"standin: unknown STANDIN_SCENARIO {name!r}; known: {', '.join(sorted(SCENARIOS))}")
        sys.exit(64)
    scenario = SCENARIOS[name]
    State.args = args
    State.names = args.served_model_name or [args.model]
    State.scenario = scenario

    emit(vllm_line(f"vLLM API server version {VERSION}", "api_server.py:1043"))
    shown = dict(vars(args))
    if shown.get("api_key"):
        shown["api_key"] = "<redacted>"
    emit(vllm_line(f"args: {shown!r}", "api_server.py:1044"))
    prelude = os.environ.get("STANDIN_PRELUDE_SECONDS")
    pause(float(prelude) if prelude else float(scenario.get("prelude_seconds", 0)))
    timeline = log_timeline(scenario["log"], scenario.get("lines"))
    error = None
    if "flags" in scenario:
        texts, error = flag_budget.rescale(
            [line for _, line in timeline],
            scenario["flags"],
            flags_in_effect(args),
            model_config(args),
        )
        timeline = [(gap, text) for (gap, _), text in zip(timeline, texts, strict=False)]
        for text in texts:
            match = flag_budget.BLOCKS_RE.search(text)
            if match:
                State.blocks = (int(match["gpu"]), int(match["cpu"]))
    for gap, line in timeline:
        pause(gap)
        emit(line)
    if error:
        # What Python prints of the worker's exception (the V0 form of the fixture
        # fail_kv_cache_too_small_v0_worker_died.log), then the engine is gone.
        emit(f"ValueError: {error}")
        sys.stdout.flush()
        os._exit(1)
    if "exit_code" in scenario:
        pause(float(scenario.get("exit_delay_seconds", 0)))
        sys.stdout.flush()
        os._exit(int(scenario["exit_code"]))
    pause(float(scenario.get("ready_delay_seconds", 0)))
    thread = threading.Thread(target=serve, args=(args,), daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(1)


if __name__ == "__main__":
    main(os.environ.get("STANDIN_PROG", "api_server.py"))
