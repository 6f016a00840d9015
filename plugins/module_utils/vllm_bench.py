# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bounded serving benchmark with vLLM's own load generator, ``vllm bench serve``.

Private module_utils of llmops.gpu_serving: the API may change between releases. The
vllm_benchmark module is its user; everything here is a pure function on plain data:

- ``bench_argv`` builds the ``vllm bench serve`` command line for one concurrency level and the
  image's vLLM version (``bench_support`` says which versions have what);
- ``parse_level`` reads the JSON ``--save-result`` wrote (and the error lines it printed);
- ``check_thresholds`` compares the levels with the operator's regression thresholds;
- ``render_table`` and ``render_html`` show the levels (the HTML is one self-contained file
  with an inline SVG of latency against throughput across the levels).

What runs is the image's own ``vllm bench serve``: the load generator vLLM maintains, of the
same version as the server, already in the image. Nothing is installed on the host.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Version = tuple[int, ...]

# Where each fact comes from (vllm-project/vllm pull requests, read 2026-12-02):
# - #13993 (merged 2025-03) added `vllm bench serve`: OpenAI completions, random dataset only
#   (#16690, 2025-04-16: "the benchmark serve cli only support random dataset"); 0.8.5
#   (2025-04-28) is the first release this collection drives it on.
# - #18566 (merged 2025-05-22, after 0.9.0) synced it with benchmark_serving.py: the other
#   datasets and `--endpoint-type openai-chat`.
# - `--endpoint-type` became `--backend` in September 2025 (vllm-project/vllm-ascend #3218,
#   2025-09-27: "the newest vllm commit has deprecated the arg --endpoint-type"): 0.11.0.
# - #21696 (2025-07-28) added the initial test request with `--ready-check-timeout-sec`;
#   #25420 (2025-09-22) lets 0 skip it. Before 0.11 a failed first request aborts the whole
#   run without a result, so an all-failing level reports the abort, not counted requests.
# - The OpenAI request functions send `Authorization: Bearer $OPENAI_API_KEY` in every version
#   (vllm/benchmarks/lib/endpoint_request_func.py in 0.32): the key travels in the exec's
#   environment, never in the command line.
# - 0.32.0 is checked on the real engine (tests/fixtures/vllm_bench/SOURCES.md).
BENCH_SERVE_FROM: Version = (0, 8, 5)
CHAT_FROM: Version = (0, 9, 1)
BACKEND_FLAG_FROM: Version = (0, 11, 0)
SKIP_READY_CHECK_FROM: Version = (0, 11, 0)

API_ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
API_BACKENDS = {"completions": "openai", "chat": "openai-chat"}
PERCENTILES = (50, 99)
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
# Exit status of `timeout -s KILL` when it killed the command.
KILLED_STATUSES = (124, 137)
_ERROR_LINE = re.compile(r"^Error \d+: (.*)$")


class BenchError(ValueError):
    """A benchmark this image's vLLM cannot run, or options that contradict each other."""


@dataclass(frozen=True)
class BenchSupport:
    """What the image's ``vllm bench serve`` takes."""

    backend_flag: str
    apis: tuple[str, ...]
    skip_ready_check: bool


def _at_least(version: Version, floor: Version) -> bool:
    length = max(len(version), len(floor))
    return tuple(version) + (0,) * (length - len(version)) >= floor + (0,) * (length - len(floor))


def format_version(version: Version | None) -> str:
    return ".".join(str(part) for part in version) if version else "unknown"


def bench_support(version: Version | None) -> BenchSupport:
    """The ``vllm bench serve`` of a vLLM version, or BenchError when it has none we drive.

    An unknown version is refused: the flags differ between releases, and a guess ends in an
    argparse error after the load was planned.
    """
    if version is None:
        raise BenchError(
            "the image's vLLM version is unknown: set vllm_version so that the benchmark's "
            "flags can be chosen for it"
        )
    if not _at_least(version, BENCH_SERVE_FROM):
        raise BenchError(
            f"vLLM {format_version(version)} has no `vllm bench serve` that this module drives "
            f"(from {format_version(BENCH_SERVE_FROM)}); its benchmarks/benchmark_serving.py "
            "lives in vLLM's source tree, not in the serving image"
        )
    new_flags = _at_least(version, BACKEND_FLAG_FROM)
    return BenchSupport(
        backend_flag="--backend" if new_flags else "--endpoint-type",
        apis=("completions", "chat") if _at_least(version, CHAT_FROM) else ("completions",),
        skip_ready_check=_at_least(version, SKIP_READY_CHECK_FROM),
    )


def validate_options(options: Mapping[str, Any]) -> list[str]:
    """What is wrong with the benchmark options, each as one sentence."""
    errors = []
    levels = list(options.get("concurrency") or [])
    if not levels:
        errors.append("concurrency must list at least one level")
    if any(int(level) < 1 for level in levels):
        errors.append(f"every concurrency level must be 1 or more; got {levels}")
    if len(set(levels)) != len(levels):
        errors.append(f"concurrency levels must be distinct; got {levels}")
    for name in ("num_prompts", "input_len", "output_len", "timeout"):
        if int(options.get(name) or 0) < 1:
            errors.append(f"{name} must be 1 or more; got {options.get(name)}")
    if int(options.get("port") or 0) not in range(1, 65536):
        errors.append(f"port must be a TCP port (1-65535); got {options.get('port')}")
    return errors


def bench_argv(
    options: Mapping[str, Any],
    version: Version | None,
    concurrency: int,
    result_dir: str,
    result_filename: str,
) -> list[str]:
    """``vllm bench serve`` for one level, against the container's own endpoint only.

    Fixed prompt and output lengths (``--random-range-ratio`` is not passed: its default is
    0, and ``--ignore-eos`` keeps every answer at ``output_len`` tokens), a fixed seed, the
    concurrency as ``--max-concurrency`` with requests sent as fast as it allows.
    """
    support = bench_support(version)
    api = options.get("api") or "completions"
    if api not in support.apis:
        raise BenchError(
            f"vLLM {format_version(version)}'s `vllm bench serve` has no {api} backend "
            f"(it has {', '.join(support.apis)})"
        )
    argv = [
        "vllm",
        "bench",
        "serve",
        support.backend_flag,
        API_BACKENDS[api],
        "--base-url",
        f"http://127.0.0.1:{int(options['port'])}",
        "--endpoint",
        API_ENDPOINTS[api],
        # --model is what requests name (the served model name); the tokenizer that counts
        # the tokens is the model directory inside the container.
        "--model",
        str(options["served_model_name"]),
        "--tokenizer",
        str(options["tokenizer"]),
        "--dataset-name",
        "random",
        "--random-input-len",
        str(int(options["input_len"])),
        "--random-output-len",
        str(int(options["output_len"])),
        "--num-prompts",
        str(int(options["num_prompts"])),
        "--max-concurrency",
        str(int(concurrency)),
        "--seed",
        str(int(options.get("seed") or 0)),
        "--percentile-metrics",
        ",".join(LATENCY_METRICS),
        "--metric-percentiles",
        ",".join(str(p) for p in PERCENTILES),
        "--disable-tqdm",
        "--save-result",
        "--result-dir",
        result_dir,
        "--result-filename",
        result_filename,
    ]
    if options.get("ignore_eos", True):
        argv.append("--ignore-eos")
    if support.skip_ready_check:
        # Without it, one failed first request aborts the level with no figures at all; with
        # it, failed requests are counted like the others.
        argv += ["--ready-check-timeout-sec", "0"]
    return argv


def with_time_limit(argv: Sequence[str], seconds: int) -> list[str]:
    """Run ``argv`` under coreutils ``timeout``: SIGKILL at the limit, exit status 137."""
    return ["timeout", "-s", "KILL", str(int(seconds)), *argv]


def error_lines(stdout: str) -> list[str]:
    """The distinct request errors ``vllm bench serve`` printed (``Error 3: Not Found``)."""
    found: list[str] = []
    for line in (stdout or "").splitlines():
        match = _ERROR_LINE.match(line.strip())
        if match and match.group(1).strip() not in found:
            found.append(match.group(1).strip())
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rounded(value: Any, digits: int = 2) -> float | None:
    number = _number(value)
    return None if number is None else round(number, digits)


def parse_level(result: Mapping[str, Any], concurrency: int, stdout: str = "") -> dict[str, Any]:
    """One level's figures from the JSON ``vllm bench serve --save-result`` wrote.

    Latencies are milliseconds; with no successful request vLLM writes 0.0 for them, which
    would pass any ceiling, so they are None here.
    """
    completed = int(result.get("completed") or 0)
    failed = int(result.get("failed") or 0)
    latency: dict[str, dict[str, float | None]] = {}
    for metric in LATENCY_METRICS:
        figures = {"mean": _rounded(result.get(f"mean_{metric}_ms"))}
        for p in PERCENTILES:
            figures[f"p{p}"] = _rounded(result.get(f"p{p}_{metric}_ms"))
        latency[metric] = figures if completed else dict.fromkeys(figures)
    errors = error_lines(stdout)
    detailed = [str(e) for e in result.get("errors") or [] if e]
    for error in detailed:
        if error not in errors:
            errors.append(error)
    return {
        "concurrency": int(concurrency),
        "num_prompts": int(result.get("num_prompts") or completed + failed),
        "completed": completed,
        "failed": failed,
        "duration_s": _rounded(result.get("duration"), 3),
        "request_throughput": _rounded(result.get("request_throughput"), 3),
        "output_throughput": _rounded(result.get("output_throughput")),
        "total_token_throughput": _rounded(result.get("total_token_throughput")),
        "total_input_tokens": int(result.get("total_input_tokens") or 0),
        "total_output_tokens": int(result.get("total_output_tokens") or 0),
        "ttft_ms": latency["ttft"],
        "tpot_ms": latency["tpot"],
        "itl_ms": latency["itl"],
        "e2el_ms": latency["e2el"],
        "errors": errors[:5],
        "aborted": None,
    }


def aborted_level(
    concurrency: int, num_prompts: int, reason: str, stdout: str = ""
) -> dict[str, Any]:
    """A level that left no result: killed at the time limit, or vLLM refused to run it.

    No request is counted as completed; every prompt counts as failed (none was measured).
    """
    empty = {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    errors = error_lines(stdout)
    tail = [line for line in (stdout or "").splitlines() if line.strip()][-3:]
    return {
        "concurrency": int(concurrency),
        "num_prompts": int(num_prompts),
        "completed": 0,
        "failed": int(num_prompts),
        "duration_s": None,
        "request_throughput": None,
        "output_throughput": None,
        "total_token_throughput": None,
        "total_input_tokens": 0,
        "total_output_tokens": 0,
        "ttft_ms": dict(empty),
        "tpot_ms": dict(empty),
        "itl_ms": dict(empty),
        "e2el_ms": dict(empty),
        "errors": (errors or tail)[:5],
        "aborted": reason,
    }


def check_thresholds(
    levels: Sequence[Mapping[str, Any]], thresholds: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The regression verdict: every level against every threshold that is set.

    ``min_output_throughput`` (tokens/s, a floor per level), ``max_p99_ttft_ms`` (a ceiling
    per level) and ``max_failed_requests`` (per level). A level without the figure (no
    successful request, aborted) violates the floor or ceiling: nothing proves it holds.
    """
    thresholds = {k: v for k, v in (thresholds or {}).items() if v is not None}
    violations: list[str] = []
    for level in levels:
        where = f"concurrency {level['concurrency']}"
        floor = thresholds.get("min_output_throughput")
        if floor is not None:
            got = level.get("output_throughput")
            if got is None or not level.get("completed"):
                violations.append(f"{where}: no output throughput measured (floor {floor} tok/s)")
            elif got < float(floor):
                violations.append(
                    f"{where}: output throughput {got} tok/s is below the floor {floor} tok/s"
                )
        ceiling = thresholds.get("max_p99_ttft_ms")
        if ceiling is not None:
            got = (level.get("ttft_ms") or {}).get("p99")
            if got is None:
                violations.append(f"{where}: no p99 TTFT measured (ceiling {ceiling} ms)")
            elif got > float(ceiling):
                violations.append(f"{where}: p99 TTFT {got} ms is above the ceiling {ceiling} ms")
        max_failed = thresholds.get("max_failed_requests")
        if max_failed is not None and int(level.get("failed") or 0) > int(max_failed):
            violations.append(
                f"{where}: {level['failed']} of {level['num_prompts']} requests failed "
                f"(at most {max_failed} allowed)"
            )
    return {
        "checked": bool(thresholds),
        "passed": not violations,
        "thresholds": thresholds,
        "violations": violations,
    }


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


TABLE_HEADER = (
    "concurrency | completed | failed | req/s | output tok/s | TTFT p50 ms | TTFT p99 ms"
    " | TPOT p50 ms | TPOT p99 ms | ITL p50 ms | ITL p99 ms"
)


def table_row(level: Mapping[str, Any]) -> str:
    cells = [
        level["concurrency"],
        level["completed"],
        level["failed"],
        level["request_throughput"],
        level["output_throughput"],
        level["ttft_ms"]["p50"],
        level["ttft_ms"]["p99"],
        level["tpot_ms"]["p50"],
        level["tpot_ms"]["p99"],
        level["itl_ms"]["p50"],
        level["itl_ms"]["p99"],
    ]
    row = " | ".join(_cell(cell) for cell in cells)
    return f"{row} | aborted: {level['aborted']}" if level.get("aborted") else row


def render_table(levels: Sequence[Mapping[str, Any]]) -> list[str]:
    """The levels as lines of ``a | b | c``: the header first, one line per level."""
    return [TABLE_HEADER] + [table_row(level) for level in levels]


# ------------------------------------------------------------------------------ the picture

_WIDTH, _HEIGHT = 560, 320
_MARGIN = {"left": 64, "right": 16, "top": 28, "bottom": 44}
_SERIES = (
    ("ttft_ms", "p50", "TTFT p50", "#1f77b4", ""),
    ("ttft_ms", "p99", "TTFT p99", "#1f77b4", "6 4"),
    ("tpot_ms", "p50", "TPOT p50", "#d62728", ""),
    ("tpot_ms", "p99", "TPOT p99", "#d62728", "6 4"),
)


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above value (an axis end)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))  # pragma: no cover - the loop always returns


def _panel_svg(levels: Sequence[Mapping[str, Any]], series: Sequence[tuple]) -> str:
    """One chart: latency (y, ms) against output throughput (x, tok/s), a point per level."""
    plot_w = _WIDTH - _MARGIN["left"] - _MARGIN["right"]
    plot_h = _HEIGHT - _MARGIN["top"] - _MARGIN["bottom"]
    measured = [lv for lv in levels if lv.get("output_throughput") is not None]
    x_max = _nice_max(max((lv["output_throughput"] for lv in measured), default=0) * 1.05)
    ys = [
        lv[metric][stat]
        for lv in measured
        for metric, stat, *_ in series
        if lv[metric][stat] is not None
    ]
    y_max = _nice_max(max(ys, default=0) * 1.05)

    def x_of(value: float) -> float:
        return round(_MARGIN["left"] + plot_w * value / x_max, 1)

    def y_of(value: float) -> float:
        return round(_MARGIN["top"] + plot_h * (1 - value / y_max), 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" font-family="sans-serif" font-size="11">',
        f'<rect x="{_MARGIN["left"]}" y="{_MARGIN["top"]}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999"/>',
    ]
    for i in range(6):
        x_value, y_value = x_max * i / 5, y_max * i / 5
        parts.append(
            f'<text x="{x_of(x_value)}" y="{_HEIGHT - _MARGIN["bottom"] + 14}" '
            f'text-anchor="middle">{x_value:g}</text>'
        )
        parts.append(
            f'<text x="{_MARGIN["left"] - 6}" y="{y_of(y_value) + 4}" '
            f'text-anchor="end">{y_value:g}</text>'
        )
    parts.append(
        f'<text x="{_MARGIN["left"] + plot_w / 2}" y="{_HEIGHT - 8}" text-anchor="middle">'
        "output throughput (tokens/s)</text>"
    )
    parts.append(
        f'<text x="14" y="{_MARGIN["top"] + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_MARGIN["top"] + plot_h / 2})">latency (ms)</text>'
    )
    for index, (metric, stat, label, colour, dash) in enumerate(series):
        points = [
            (x_of(lv["output_throughput"]), y_of(lv[metric][stat]), lv["concurrency"])
            for lv in sorted(measured, key=lambda lv: lv["concurrency"])
            if lv[metric][stat] is not None
        ]
        if points:
            path = " ".join(f"{x},{y}" for x, y, _ in points)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}"{dash_attr}/>')
            for x, y, concurrency in points:
                parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
                parts.append(
                    f'<text x="{x + 5}" y="{y - 5}" fill="{colour}">c={concurrency}</text>'
                )
        legend_x = _MARGIN["left"] + 8 + index * 110
        parts.append(
            f'<line x1="{legend_x}" y1="14" x2="{legend_x + 20}" y2="14" stroke="{colour}"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
        )
        parts.append(f'<text x="{legend_x + 24}" y="18">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(
    host: str,
    levels: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    verdict: Mapping[str, Any] | None = None,
) -> str:
    """One self-contained HTML page (inline SVG, no script, no external file) for one host."""
    esc = html.escape
    rows = "\n".join(
        "<tr>"
        + "".join(f"<td>{esc(cell.strip())}</td>" for cell in table_row(lv).split("|"))
        + "</tr>"
        for lv in levels
    )
    header = "".join(f"<th>{esc(cell.strip())}</th>" for cell in TABLE_HEADER.split("|"))
    facts = "\n".join(
        f"<li><b>{esc(str(key))}</b>: {esc(str(value))}</li>" for key, value in meta.items()
    )
    verdict_html = ""
    if verdict and verdict.get("checked"):
        status = "passed" if verdict.get("passed") else "FAILED"
        items = "".join(f"<li>{esc(v)}</li>" for v in verdict.get("violations") or [])
        verdict_html = (
            f"<h2>Regression check: {status}</h2><p>{esc(str(verdict.get('thresholds')))}</p>"
            f"<ul>{items}</ul>"
        )
    ttft = _panel_svg(levels, _SERIES[:2])
    tpot = _panel_svg(levels, _SERIES[2:])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vLLM serving benchmark: {esc(host)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
</style>
</head>
<body>
<h1>vLLM serving benchmark: {esc(host)}</h1>
<ul>
{facts}
</ul>
<p>Each point is one concurrency level (c=N): its output throughput against its latency.</p>
<h2>Time to first token</h2>
{ttft}
<h2>Time per output token</h2>
{tpot}
<h2>Levels</h2>
<table>
<tr>{header}</tr>
{rows}
</table>
{verdict_html}
</body>
</html>
"""
