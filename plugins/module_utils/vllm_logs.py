# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read vLLM startup logs: memory budget, KV cache capacity, readiness and failures.

Private module_utils of llmops.gpu_serving: the API may change between releases of this
collection. One implementation serves the vllm_container module (which watches a starting
container) and the vllm_memory_report filter; neither may parse logs on its own.

The formats handled here are the ones vLLM printed from 0.6 to 0.3x: V0 and V1 engines,
headers with and without the bracket around ``file.py:123``, process prefixes of every
release, Ray prefixes and their ``[repeated Nx across cluster]`` suffix, docker compose
prefixes, ANSI colour (whole or only its residue), CRLF line ends and numbers printed with
thousands separators. Lines that a terminal hard-wrapped are not joined again: a figure split
over two lines is not read.
"""

import re
from typing import Any

# The escape byte is often lost on the way to a paste or a CI log; what remains is "[0;36m",
# or "^[[0;36m" where a terminal printed the byte in caret notation.
# Without the escape byte at least one digit is required: "[m" also opens "[multiproc_...py:1]".
ANSI_COLOUR_RE = re.compile(r"\x1b\[[0-9;]*m|(?:\^\[)?\[[0-9;]+m")
# docker compose v1 ("service_1  | ") and v2 ("service-1  | ").
COMPOSE_PREFIX_RE = re.compile(r"^[A-Za-z0-9][\w.-]*[-_]\d+\s*\|(?: |$)")
# Timestamps that `docker logs -t` and CI runners (Buildkite) put in front of a line.
TIMESTAMP_PREFIX_RE = re.compile(
    r"^\[?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?\]?\s+"
)
# vLLM's own header. Before 0.8 the file name had no opening bracket; from 0.10.2 the file
# part may be a short path at DEBUG level.
HEADER_RE = re.compile(
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<date>\d\d-\d\d) (?P<time>\d\d:\d\d:\d\d)(?:\.\d+)? "
    r"\[?(?P<file>[\w./-]+\.py):(?P<lineno>\d+)\] ?"
)
# "(VllmWorkerProcess pid=193)", "(VllmWorker rank=1 pid=5)", "(VllmWorker TP0 pid=5)",
# "(Worker_PP0_TP1 pid=5)", "(EngineCore_DP0 pid=5)", "(RayWorkerWrapper pid=5, ip=10.0.0.1)",
# and Ray's bare "(pid=374, ip=10.0.0.2)".
PROCESS_PREFIX_RE = re.compile(
    r"\((?:(?P<name>[^\s()=]+(?: (?:rank=\d+|TP\d+))?) )?pid=(?P<pid>\d+)"
    r"(?:, ip=(?P<ip>[^\s)]+))?\)"
)
LEADING_PREFIXES_RE = re.compile(r"^(?:\([^()]*pid=\d+[^()]*\)\s*)+")
RAY_REPEATED_RE = re.compile(r"\s*\[repeated \d+x across cluster\]\s*$")
RANK_RE = re.compile(r"\brank=(\d+)")
TP_RE = re.compile(r"TP(\d+)")
PP_RE = re.compile(r"PP(\d+)")
DP_RE = re.compile(r"(?:DP|EngineCore_)(\d+)")

# Thousands separators appear in V1 figures ("32,768"); a comma after a figure is punctuation.
NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?"

# Figures printed once per worker rank.
RANK_FIGURE_PATTERNS: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (
        re.compile(
            rf"(?:Model loading|Loading model weights) took (?P<gib>{NUMBER}) (?:GiB|GB)"
            rf"(?: memory)?(?: and (?P<sec>{NUMBER}) seconds)?"
        ),
        {"gib": "model_load_gib", "sec": "model_load_seconds"},
    ),
    (
        re.compile(rf"Memory profiling takes (?P<sec>{NUMBER}) seconds"),
        {"sec": "memory_profiling_seconds"},
    ),
    (
        re.compile(
            rf"total_gpu_memory \((?P<total>{NUMBER}) ?GiB\) x gpu_memory_utilization "
            rf"\((?P<util>{NUMBER})\) = (?P<budget>{NUMBER}) ?GiB"
        ),
        {
            "total": "total_gpu_memory_gib",
            "util": "gpu_memory_utilization",
            "budget": "budget_gib",
        },
    ),
    (
        re.compile(
            rf"model weights take (?P<w>{NUMBER}) ?GiB; non_torch_memory takes "
            rf"(?P<nt>{NUMBER}) ?GiB; PyTorch activation peak memory takes (?P<act>{NUMBER}) ?GiB;"
            rf" the rest of the memory reserved for KV Cache is (?P<kv>{NUMBER}) ?GiB"
        ),
        {
            "w": "weights_gib",
            "nt": "non_torch_gib",
            "act": "activation_peak_gib",
            "kv": "kv_cache_gib",
        },
    ),
    # vLLM <= 0.6.4 printed the profile as one line of key=value pairs.
    (
        re.compile(
            rf"Memory profiling results: total_gpu_memory=(?P<total>{NUMBER})GiB .*?"
            rf"non_torch_memory=(?P<nt>{NUMBER})GiB kv_cache_size=(?P<kv>{NUMBER})GiB "
            rf"gpu_memory_utilization=(?P<util>{NUMBER})"
        ),
        {
            "total": "total_gpu_memory_gib",
            "nt": "non_torch_gib",
            "kv": "kv_cache_gib",
            "util": "gpu_memory_utilization",
        },
    ),
    (
        re.compile(rf"Available KV cache memory: (?P<kv>{NUMBER}) ?GiB"),
        {"kv": "kv_cache_gib"},
    ),
    # The CPU worker (vllm/v1/worker/cpu_worker.py, 0.32): VLLM_CPU_KVCACHE_SPACE or its share.
    (
        re.compile(rf"(?:Explicitly|Auto) set \((?P<kv>{NUMBER})/{NUMBER}\) GiB for KV cache"),
        {"kv": "kv_cache_gib"},
    ),
    (
        re.compile(
            rf"Graph capturing finished in (?P<sec>{NUMBER}) secs?, took (?P<gib>{NUMBER}) GiB"
        ),
        {"sec": "graph_capture_seconds", "gib": "graph_capture_gib"},
    ),
)
RANK_FIGURE_KEYS = (
    "total_gpu_memory_gib",
    "gpu_memory_utilization",
    "budget_gib",
    "weights_gib",
    "non_torch_gib",
    "activation_peak_gib",
    "kv_cache_gib",
    "model_load_gib",
    "model_load_seconds",
    "memory_profiling_seconds",
    "graph_capture_gib",
    "graph_capture_seconds",
)

GPU_BLOCKS_RE = re.compile(
    rf"(?:# )?(?:cuda|GPU) blocks: (?P<gpu>{NUMBER})(?:, # CPU blocks: (?P<cpu>{NUMBER}))?"
)
GPU_BLOCKS_METRIC_RE = re.compile(rf"num_gpu_blocks is: (?P<gpu>{NUMBER})")
# "GPU KV cache size", and from 0.2x the device of the platform: "CPU KV cache size" on the CPU
# build, "GPU + host KV cache size" with a host tier (vllm/v1/core/kv_cache_utils.py, 0.32).
KV_TOKENS_RE = re.compile(
    rf"\b(?P<device>[A-Z]{{2,5}})(?: \+ host)? KV cache size: (?P<tokens>{NUMBER}) tokens"
)
CONCURRENCY_RE = re.compile(
    rf"Maximum concurrency for (?P<len>{NUMBER}) tokens per request: (?P<x>{NUMBER})x"
)
MAX_SEQ_LEN_RE = re.compile(r"\bmax_seq_len=(?P<len>\d+)")
MAX_MODEL_LEN_RE = re.compile(r"Using max model len (?P<len>\d+)")
INIT_ENGINE_RE = re.compile(
    rf"init engine \(profile, create kv cache, warmup model\) took (?P<sec>{NUMBER}) s"
)
ENGINE_BANNER_RE = re.compile(
    r"Initializing an? (?:(?P<engine>V[01]) )?LLM engine \(v(?P<ver>[^)]+)\)"
)
API_VERSION_RE = re.compile(r"vLLM API server version (?P<ver>\S+)")
ART_VERSION_RE = re.compile(r"█.*\bversion\s+(?P<ver>\d[\w.+-]*)")
V0_FALLBACK_RE = re.compile(r"Falling back to V0")
# uvicorn's line (every version), vLLM's own before it, and the >= 0.18 wording.
READY_RE = re.compile(r"Application startup complete\.|Starting vLLM (?:API )?server on \S")
UVICORN_READY_RE = re.compile(r"Application startup complete\.")
# Lines that log a request, never an engine event: whatever they quote (a prompt, a model's
# output, a URL) is a client's text. vLLM 0.8.5 logs every prompt at INFO
# ("Received request chatcmpl-..: prompt: '...'"); later versions with --enable-log-requests
# ("Received request ..: params: ..", DEBUG "Request .. details: prompt: ..") and
# --enable-log-outputs ("Generated response ..: output: '...'"); the engines' "Added request",
# "Finished request", "Aborted request(s)"; uvicorn's access log
# ('127.0.0.1:50412 - "POST /v1/chat/completions HTTP/1.1" 200 OK').
REQUEST_LOG_RE = re.compile(
    r"^(?:Received request \S+?:"
    r"|Request \S+ (?:details|JSON body):"
    r"|Generated response \S+"
    r"|(?:Added|Finished|Aborted) request"
    r"|\S+:\d+ - \"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) .* HTTP/[\d.]+\" \d{3}\b)"
)
# A prompt quoted anywhere else in a log line (a request's repr in a warning, say).
ECHOED_PROMPT_RE = re.compile(r"\bprompt: (?:'|\")|\bprompt_token_ids: \[")
# The same markers anywhere in the text before a header: a header inside a quoted path or
# prompt ('"GET /x?q=ERROR 12-02 20:31:05 [core.py:1] ..."') is a client's text, not a line.
REQUEST_MARKER_RE = re.compile(
    r"Received request \S+?:|Request \S+ (?:details|JSON body):|Generated response \S+"
    r"|(?:Added|Finished|Aborted) request|\"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) "
    r"|\bprompt: (?:'|\")"
)
# Lines only one engine prints, for logs that lack the banner (the seed's excerpt).
V0_MARKER_RE = re.compile(
    r"model weights take .*KV Cache is|# (?:cuda|CPU) blocks:|Memory profiling takes"
)
V1_MARKER_RE = re.compile(r"Available KV cache memory:|[A-Z] KV cache size:|EngineCore")
# V0 named its workers VllmWorkerProcess; V1's are VllmWorker, Worker_TP0 and EngineCore.
V1_PROCESS_RE = re.compile(r"^(?:VllmWorker |Worker_|EngineCore)")

# Most specific first: a wrapper (engine_failed) only says that something above it failed.
FAILURE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "kv_cache_too_small",
        re.compile(
            r"max seq len \(\d+\) is larger than the maximum number of tokens that can be "
            r"stored in KV cache|To serve at least one request with the models?'s max seq len"
        ),
    ),
    (
        "no_cache_memory",
        re.compile(
            r"No available memory for the cache blocks"
            r"|Available memory on node \d+ \(.*\) on kv cache allocation is less than requested"
        ),
    ),
    (
        "gpu_memory_busy",
        re.compile(
            r"Free memory on device .*on startup is less than desired GPU memory utilization"
        ),
    ),
    (
        "cuda_oom",
        re.compile(
            r"CUDA out of memory|OutOfMemoryError|Failed to load model - not enough GPU memory"
        ),
    ),
    (
        "model_not_found",
        re.compile(
            r"Invalid repository ID or local directory specified|Cannot find any model weights"
            r"|HFValidationError: Repo id must"
        ),
    ),
    # 0.8.5 raises a ValueError, >= 0.10 a pydantic ValidationError ("Value error, User-...").
    (
        "max_model_len_too_large",
        re.compile(
            r"User-specified max_model_len \(\d+\) is greater than the derived max_model_len"
        ),
    ),
    ("bad_argument", re.compile(r": error: (?:unrecognized arguments:|argument )")),
    (
        "cuda_driver",
        re.compile(
            r"nvidia-container-cli: requirement error"
            r"|forward compatibility was attempted on non supported HW"
            r"|CUDA driver version is insufficient for CUDA runtime version"
            r"|The NVIDIA driver on your system is too old"
            r"|Failed to infer device type"
        ),
    ),
    (
        "nccl",
        re.compile(
            r"NCCL error|ncclShmOpen|Error while creating shared memory segment /dev/shm/nccl-"
            r"|ncclSystemError|ncclUnhandledCudaError"
        ),
    ),
    (
        "engine_failed",
        re.compile(
            r"Engine core initialization failed\. See root cause above"
            r"|EngineCore failed to start\.|EngineCore hit an exception"
            r"|WorkerProc failed to start\.|Worker failed with error"
            r"|Worker \S+ pid \d+ died, exit code"
        ),
    ),
)
FAILURE_KINDS = tuple(kind for kind, _ in FAILURE_PATTERNS)
FAILURE_ORDER = {kind: index for index, kind in enumerate(FAILURE_KINDS)}


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    return float(text.replace(",", ""))


def _integer(text: str | None) -> int | None:
    if text is None:
        return None
    return int(text.replace(",", ""))


def split_lines(text: str) -> list[str]:
    """Split a log on LF, CRLF or lone CR (multi-line messages are joined with CRLF)."""
    return re.split(r"\r\n|\r|\n", text)


def clean_line(line: str) -> str:
    """Remove ANSI colour (or its residue), a compose prefix and line-end characters."""
    line = ANSI_COLOUR_RE.sub("", line.rstrip("\r\n"))
    return COMPOSE_PREFIX_RE.sub("", line, count=1)


def _process_info(prefix_text: str) -> dict[str, Any]:
    """Describe the innermost process prefix ("(EngineCore_0 ..) (RayWorkerWrapper ..)")."""
    info: dict[str, Any] = {
        "process": None,
        "pid": None,
        "ip": None,
        "rank": None,
        "tp": None,
        "pp": None,
        "dp": None,
        "prefix": prefix_text.strip(),
    }
    groups = list(PROCESS_PREFIX_RE.finditer(prefix_text))
    if not groups:
        return info
    innermost = groups[-1]
    name = innermost.group("name")
    info["process"] = name
    info["pid"] = int(innermost.group("pid"))
    info["ip"] = innermost.group("ip")
    if name:
        for key, pattern in (("rank", RANK_RE), ("tp", TP_RE), ("pp", PP_RE), ("dp", DP_RE)):
            found = pattern.search(name)
            if found:
                info[key] = int(found.group(1))
    return info


def normalize_line(line: str) -> tuple[dict[str, Any], str | None, str]:
    """Split one raw log line into (prefix_info, level, message).

    prefix_info has process, pid, ip, rank, tp, pp, dp (None where the line does not say)
    and prefix (the raw text before the header: process prefixes, VLLM_LOGGING_PREFIX,
    timestamps). level is None for lines without a vLLM header (tracebacks, uvicorn, Docker).
    """
    cleaned = clean_line(line)
    header = HEADER_RE.search(cleaned)
    if header:
        prefix_text = cleaned[: header.start()]
        level: str | None = header.group("level")
        message = cleaned[header.end() :]
    else:
        unstamped = TIMESTAMP_PREFIX_RE.sub("", cleaned, count=1)
        leading = LEADING_PREFIXES_RE.match(unstamped)
        prefix_text = cleaned[: len(cleaned) - len(unstamped)]
        if leading:
            prefix_text += leading.group(0)
            message = unstamped[leading.end() :]
        else:
            message = unstamped
        level = None
        # uvicorn's own lines ("INFO:     Application startup complete.") carry a level too.
        uvicorn = re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+", message)
        if uvicorn:
            level = uvicorn.group(1)
            message = message[uvicorn.end() :]
    message = RAY_REPEATED_RE.sub("", message).rstrip(" \t│")
    return _process_info(prefix_text), level, message


def _rank_identity(info: dict[str, Any]) -> tuple[Any, ...]:
    if info["rank"] is not None:
        return ("rank", info["rank"])
    if info["tp"] is not None or info["pp"] is not None:
        return ("tp", info["pp"], info["tp"], info["dp"])
    if info["pid"] is not None:
        return ("pid", info["pid"], info["ip"])
    # V0 prints rank 0's lines without a prefix.
    return ("unprefixed",)


def _new_rank(info: dict[str, Any]) -> dict[str, Any]:
    rank = info["rank"]
    if rank is None and info["tp"] is not None and not info["pp"]:
        rank = info["tp"]
    process = info["process"]
    if rank is None and info["pid"] is None:
        rank = 0
    if rank is None and process and process.startswith("EngineCore"):
        # With TP=1 the only worker runs inside the engine core process.
        rank = 0
    entry: dict[str, Any] = {"rank": rank, "pid": info["pid"], "process": process}
    if info["ip"]:
        entry["ip"] = info["ip"]
    if info["tp"] is not None:
        entry["tp"] = info["tp"]
    if info["pp"] is not None:
        entry["pp"] = info["pp"]
    return entry


def is_request_log(message: str) -> bool:
    """Whether a message (normalize_line()'s third part) logs a request or quotes a prompt."""
    return bool(REQUEST_LOG_RE.search(message) or ECHOED_PROMPT_RE.search(message))


def classify_message(message: str) -> str | None:
    """Return the failure kind a single message proves, or None.

    Request logs and echoed prompts prove nothing: a client may paste any error message.
    """
    if is_request_log(message):
        return None
    for kind, pattern in FAILURE_PATTERNS:
        if pattern.search(message):
            return kind
    return None


def line_failure(line: str) -> tuple[str | None, str]:
    """(failure kind or None, message) of one raw log line; request logs have no kind."""
    info, _, message = normalize_line(line)
    if REQUEST_MARKER_RE.search(info["prefix"]):
        return None, message
    return classify_message(message), message


def is_fatal_line(line: str) -> str | None:
    """Return the failure kind of one raw log line, for readers that stream a log."""
    return line_failure(line)[0]


def startup_section(lines: list[str]) -> list[str]:
    """The lines of a startup: up to and including the ready line, or all without one.

    The end is uvicorn's ``Application startup complete.`` when the log has it, else vLLM's
    ``Starting vLLM (API) server on ...``. What follows is serving: request logs and the
    engine's answers to them, which say nothing about how the server started.
    """
    for pattern in (UVICORN_READY_RE, READY_RE):
        for index, raw in enumerate(lines):
            if pattern.search(clean_line(raw)):
                return lines[: index + 1]
    return list(lines)


def _sort_failures(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(errors, key=lambda error: FAILURE_ORDER.get(error["kind"], len(FAILURE_ORDER)))


def classify_failure(text: str) -> list[dict[str, str]]:
    """Return [{"kind", "line"}] for every failure line, the most specific kind first.

    "line" is the log line without colour codes; lines that repeat across ranks are listed
    once. Within one kind the log order is kept.
    """
    errors: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for raw in split_lines(text):
        kind, message = line_failure(raw)
        if kind is None or (kind, message) in seen:
            continue
        seen.add((kind, message))
        errors.append({"kind": kind, "line": clean_line(raw).strip()})
    return _sort_failures(errors)


def primary_failure(errors: list[dict[str, str]]) -> dict[str, str] | None:
    """Return the root cause among classified failures: wrappers never win over a cause."""
    if not errors:
        return None
    return _sort_failures(list(errors))[0]


def _minimum(values: list[Any]) -> Any:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def _maximum(values: list[Any]) -> Any:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def parse_memory_report(text: str) -> dict[str, Any]:
    """Read the memory budget and KV cache capacity a vLLM startup log reports.

    Returns a dict with the keys engine, vllm_version, ranks, kv_cache_gib, weights_gib,
    gpu_blocks, cpu_blocks, kv_cache_tokens, max_model_len, max_concurrency, ready, errors,
    total_gpu_memory_gib, gpu_memory_utilization, budget_gib, model_load_seconds,
    init_engine_seconds, graph_capture_gib, graph_capture_seconds. A figure the log does not
    give is None. Capacity figures are the minimum over ranks (vLLM sizes the cache for the
    tightest rank); weights and timings are the maximum.
    """
    ranks: dict[tuple[Any, ...], dict[str, Any]] = {}
    engine: str | None = None
    engine_hint: str | None = None
    version: str | None = None
    gpu_blocks: list[int | None] = []
    cpu_blocks: list[int | None] = []
    kv_tokens: list[int | None] = []
    concurrency: list[float | None] = []
    max_model_len: int | None = None
    config_model_len: int | None = None
    init_seconds: list[float | None] = []
    ready = False

    for raw in split_lines(text):
        info, _, message = normalize_line(raw)
        if not message:
            continue

        for pattern, fields in RANK_FIGURE_PATTERNS:
            found = pattern.search(message)
            if not found:
                continue
            identity = _rank_identity(info)
            entry = ranks.setdefault(identity, _new_rank(info))
            for group, key in fields.items():
                value = _number(found.group(group))
                if value is not None:
                    entry[key] = value

        blocks = GPU_BLOCKS_RE.search(message) or GPU_BLOCKS_METRIC_RE.search(message)
        if blocks:
            gpu_blocks.append(_integer(blocks.group("gpu")))
            if "cpu" in blocks.groupdict():
                cpu_blocks.append(_integer(blocks.group("cpu")))
        # The >= 0.28 one-line form holds both of the next two figures.
        tokens = KV_TOKENS_RE.search(message)
        if tokens:
            kv_tokens.append(_integer(tokens.group("tokens")))
        per_request = CONCURRENCY_RE.search(message)
        if per_request:
            max_model_len = _integer(per_request.group("len"))
            concurrency.append(_number(per_request.group("x")))
        configured = MAX_SEQ_LEN_RE.search(message) or MAX_MODEL_LEN_RE.search(message)
        if configured:
            config_model_len = int(configured.group("len"))
        init = INIT_ENGINE_RE.search(message)
        if init:
            init_seconds.append(_number(init.group("sec")))

        banner = ENGINE_BANNER_RE.search(message)
        if banner:
            version = banner.group("ver")
            if banner.group("engine"):
                engine = banner.group("engine").lower()
        elif version is None:
            other = API_VERSION_RE.search(message) or ART_VERSION_RE.search(message)
            if other:
                version = other.group("ver")
        if V0_FALLBACK_RE.search(message) or (engine_hint is None and V0_MARKER_RE.search(message)):
            engine_hint = "v0"
        elif engine_hint is None and (
            V1_MARKER_RE.search(message) or V1_PROCESS_RE.search(info["process"] or "")
        ):
            engine_hint = "v1"
        if READY_RE.search(message):
            ready = True

    # Known ranks in rank order, then the ones only a pid identifies, in log order.
    rank_list = sorted(
        ranks.values(),
        key=lambda entry: (
            entry["rank"] is None,
            entry["rank"] if entry["rank"] is not None else 0,
        ),
    )

    def across(key: str) -> list[Any]:
        return [entry.get(key) for entry in rank_list]

    weights = _maximum(across("weights_gib"))
    if weights is None:
        weights = _maximum(across("model_load_gib"))

    return {
        "engine": engine or engine_hint,
        "vllm_version": version,
        "ranks": rank_list,
        "kv_cache_gib": _minimum(across("kv_cache_gib")),
        "weights_gib": weights,
        "gpu_blocks": _minimum(gpu_blocks),
        "cpu_blocks": _minimum(cpu_blocks),
        "kv_cache_tokens": _minimum(kv_tokens),
        "max_model_len": max_model_len if max_model_len is not None else config_model_len,
        "max_concurrency": _minimum(concurrency),
        "ready": ready,
        "errors": classify_failure(text),
        "total_gpu_memory_gib": _minimum(across("total_gpu_memory_gib")),
        "gpu_memory_utilization": _maximum(across("gpu_memory_utilization")),
        "budget_gib": _minimum(across("budget_gib")),
        "model_load_seconds": _maximum(across("model_load_seconds")),
        "init_engine_seconds": _maximum(init_seconds),
        "graph_capture_gib": _maximum(across("graph_capture_gib")),
        "graph_capture_seconds": _maximum(across("graph_capture_seconds")),
    }
