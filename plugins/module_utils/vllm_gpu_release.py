# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait until a stopped container's GPU memory is free, from ``nvidia-smi --query-compute-apps``.

Private to llmops.gpu_serving (for vllm_container's rollback: the previous container is started
again only once the failed one's CUDA contexts are gone, or a bound passes); not a public API.

What nvidia-smi prints (``nvidia-smi --help-query-compute-apps``): one CSV line per compute
process with a CUDA context, ``pid`` the host PID and ``used_memory`` the memory its context
holds on the device (``[N/A]`` where the driver cannot say, e.g. without permission). With
``--format=csv`` the first line is a header whose names are not the query's field names
(``used_memory`` prints as ``used_gpu_memory [MiB]``; ``name`` prints as ``process_name``, as
in the paste in NVIDIA/dcgm-exporter#94); with no compute process the output is empty
(noheader) or the header alone. A process that exits leaves the list once the driver has torn
its context down, which is when its memory is free for the next engine.

Plain functions; the command runner, the sleep and the clock are arguments, so the loop is
unit-tested without a GPU and without waiting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.nvidia_smi import Runner

FIELDS: tuple[str, ...] = ("pid", "used_memory")
_NO_VALUE = re.compile(
    r"^\[?(N/A|Not Supported|Unknown Error|Insufficient Permissions|GPU is lost)\]?$"
)
_NUMBER = re.compile(r"^(\d+)(?:\s*MiB)?$")


def compute_apps_command(nvidia_smi_path: str) -> list[str]:
    """The argv that lists compute processes, one ``pid, used_memory`` line each, no units."""
    return [
        nvidia_smi_path,
        "--query-compute-apps=" + ",".join(FIELDS),
        "--format=csv,noheader,nounits",
    ]


def _cell(text: str) -> int | None:
    if _NO_VALUE.match(text):
        return None
    number = _NUMBER.match(text)
    if not number:
        raise ValueError(f"expected a number, got {text!r}")
    return int(number.group(1))


def parse_compute_apps(text: str) -> list[dict[str, int | None]]:
    """``pid``/``used_memory_mib`` per line of ``--query-compute-apps=pid,used_memory`` output.

    Accepts ``csv`` with or without ``noheader`` and ``nounits``; the header line is skipped.
    A value nvidia-smi cannot give is None. Raises ValueError for any other line (an error
    message printed on stdout, a different field list), so a failed query is never read as
    "no processes".
    """
    rows: list[dict[str, int | None]] = []
    for number, line in enumerate(ln for ln in text.splitlines() if ln.strip()):
        cells = [cell.strip() for cell in line.split(",")]
        if number == 0 and cells and cells[0] == "pid":
            continue
        if len(cells) != len(FIELDS):
            raise ValueError(
                f"nvidia-smi line has {len(cells)} values for {len(FIELDS)} fields: {line!r}"
            )
        rows.append({"pid": _cell(cells[0]), "used_memory_mib": _cell(cells[1])})
    return rows


def _first_line(*texts: str) -> str:
    for text in texts:
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return ""


def wait_released(
    run: Runner,
    nvidia_smi_path: str | None,
    pids: Iterable[int],
    *,
    timeout: float,
    interval: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> dict[str, Any]:
    """Poll nvidia-smi until none of ``pids`` holds a CUDA context, or ``timeout`` seconds pass.

    ``pids`` are the host PIDs the failed container had (``docker top`` before it was removed).
    Returns what was waited for: ``pids``, ``released`` (True: none of them is listed; False:
    the bound passed with ``remaining`` still listed; None: it could not be told, ``reason``
    says why), ``polls``, ``seconds`` (by ``clock``), ``remaining_mib`` (memory the remaining
    ones still held at the last answer) and ``last_error`` (the last query that failed). A poll
    that fails (non-zero exit, output that is not the CSV asked for) is recorded and the loop
    goes on to the bound; a missing binary ends it at once, since it cannot come back.
    """
    wanted = sorted({int(pid) for pid in pids})
    report: dict[str, Any] = {
        "pids": wanted,
        "timeout": timeout,
        "released": None,
        "polls": 0,
        "seconds": 0.0,
        "remaining": [],
        "remaining_mib": None,
        "last_error": None,
        "reason": None,
    }
    if timeout <= 0:
        report["reason"] = "the wait is off (timeout 0)"
        return report
    if not wanted:
        report["reason"] = "the failed container had no process left to wait for"
        return report
    if not nvidia_smi_path:
        report["reason"] = "nvidia-smi was not found on the host"
        return report
    argv = compute_apps_command(nvidia_smi_path)
    start = clock()
    while True:
        report["polls"] += 1
        try:
            rc, out, err = run(argv)
        except OSError as exc:
            report["last_error"] = f"{argv[0]}: {exc}"
            report["reason"] = "nvidia-smi could not be run"
            break
        rows: list[dict[str, int | None]] | None = None
        if rc != 0:
            report["last_error"] = f"rc {rc}: {_first_line(err, out)}"
        else:
            try:
                rows = parse_compute_apps(out)
            except ValueError as exc:
                report["last_error"] = str(exc)
        if rows is not None:
            listed = [row for row in rows if row["pid"] in wanted]
            report["remaining"] = sorted({row["pid"] for row in listed})
            held = [row["used_memory_mib"] for row in listed]
            report["remaining_mib"] = (
                sum(mib for mib in held if mib is not None) if held and None not in held else None
            )
            if not listed:
                report["released"] = True
                report["reason"] = None
                break
        report["seconds"] = round(clock() - start, 3)
        if report["seconds"] >= timeout:
            if rows is None and report["released"] is None and not report["remaining"]:
                report["reason"] = "nvidia-smi gave no process list within the bound"
            else:
                report["released"] = False
                report["reason"] = "the bound passed with the processes still listed"
            break
        sleep(min(interval, max(timeout - report["seconds"], 0)))
    report["seconds"] = round(clock() - start, 3)
    return report
