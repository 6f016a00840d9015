# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait until a starting vLLM server serves, or say at once why it never will.

Private module_utils of llmops.gpu_serving: the API may change between releases. The
vllm_container module hands wait_until_ready() three callables (new log lines, the container's
state, an HTTP probe) so that the loop is tested here with fakes and runs there on Docker.

The wait ends on the first of:

* ``ready``: ``GET /health`` answers 200 and ``GET /v1/models`` lists every served name;
* ``fatal_log``: a log line vllm_logs recognises as fatal (kv_cache_too_small, cuda_oom, ...);
  a short grace lets the lines after it (the root cause below a wrapper, the exit) arrive;
* ``exited``: the container stopped, or Docker restarted it;
* ``unhealthy``: ``GET /health`` answers the status that means "the engine is dead" on this
  vLLM version (health_semantics()) for ``fatal_grace`` seconds;
* ``timeout``: ``timeout`` seconds passed.

Request logs never end the wait (vllm_logs ignores them). For a container that was already
running (``startup_only``), only its startup section (the lines up to the ready line) can end
the wait: after that, the probes judge it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container import (
    models_listed,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    FAILURE_KINDS,
    READY_RE,
    classify_failure,
    clean_line,
    is_fatal_line,
    primary_failure,
    startup_section,
)

Probe = Callable[[str], tuple[int | None, str]]
# Lines that prove a failure, at most; the log tail is returned separately.
MAX_PROOF_LINES = 12
LOG_TAIL_LINES = 30


class LogFollower:
    """Read a blocking log stream (``container.logs(stream=True, follow=True)``) in a thread.

    drain() returns the complete lines that arrived since the last call, decoded as UTF-8
    (undecodable bytes replaced); a partial last line waits for its end, or for the stream
    to finish.
    """

    def __init__(self, stream: Iterable[bytes]):
        self._stream = stream
        self._chunks: queue.Queue[bytes | None] = queue.Queue()
        self._partial = b""
        self.finished = False
        self._thread = threading.Thread(target=self._run, name="vllm-log-follower", daemon=True)

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for chunk in self._stream:
                self._chunks.put(chunk if isinstance(chunk, bytes) else str(chunk).encode())
        # Whatever breaks the stream (the container removed, the socket closed) ends the
        # follow only; the wait loop goes on polling the container's state.
        except Exception:
            pass
        finally:
            self._chunks.put(None)

    def drain(self, wait: float = 0.0) -> list[str]:
        """New complete lines; with ``wait`` > 0, wait that long for the first chunk."""
        data = self._partial
        first = True
        while True:
            try:
                chunk = (
                    self._chunks.get(timeout=wait)
                    if first and wait > 0
                    else self._chunks.get_nowait()
                )
            except queue.Empty:
                break
            first = False
            if chunk is None:
                self.finished = True
                break
            data += chunk
        if self.finished:
            self._partial = b""
            text = data.decode("utf-8", errors="replace")
            return [line for line in text.splitlines()] if text else []
        complete, sep, rest = data.rpartition(b"\n")
        if not sep:
            self._partial = data
            return []
        self._partial = rest
        return complete.decode("utf-8", errors="replace").splitlines()

    def wait_finished(self, timeout: float) -> list[str]:
        """Lines until the stream ends (the container stopped) or ``timeout`` passes."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while not self.finished and time.monotonic() < deadline:
            lines.extend(self.drain(wait=0.05))
        lines.extend(self.drain())
        return lines

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


def health_semantics(version: Sequence[int] | None) -> dict[str, Any]:
    """What ``GET /health`` tells about the engine on a vLLM version (facts, "Versions").

    Returns dead_statuses (the answers that mean the engine is dead), proves_engine (whether
    a 200 proves a live engine: not on 0.8.x, whose V1 engine answers 200 when it is dead;
    None when the version is unknown) and note (a sentence for a report).
    """
    if version is None:
        return {
            "dead_statuses": (500, 503),
            "proves_engine": None,
            "note": "vLLM version unknown: /health 500 or 503 counts as a dead engine",
        }
    release = (*version, 0, 0)
    if release[:2] < (0, 9):
        return {
            "dead_statuses": (500,),
            "proves_engine": False,
            "note": (
                "vLLM before 0.9 with the V1 engine answers /health 200 even when the engine "
                "is dead; only a request (smoke_test) proves that it serves"
            ),
        }
    if release[:2] < (0, 11):
        return {
            "dead_statuses": (500,),
            "proves_engine": True,
            "note": "vLLM 0.9-0.10 answers /health 500 when the engine is dead",
        }
    return {
        "dead_statuses": (503,),
        "proves_engine": True,
        "note": "vLLM 0.11 and later answers /health 503 when the engine is dead",
    }


def failure_from_log(lines: Sequence[str]) -> tuple[str | None, list[str]]:
    """The root-cause kind and the lines that prove it (root cause first, then wrappers)."""
    errors = classify_failure("\n".join(lines))
    primary = primary_failure(errors)
    if primary is None:
        return None, []
    proof = [error["line"] for error in errors if error["kind"] == primary["kind"]]
    proof += [error["line"] for error in errors if error["kind"] != primary["kind"]]
    return primary["kind"], proof[:MAX_PROOF_LINES]


def wait_until_ready(
    *,
    read_logs: Callable[[], list[str]],
    container_state: Callable[[], dict[str, Any]],
    probe: Probe,
    served_names: Sequence[str],
    timeout: float,
    log_lines: list[str],
    full_log: Callable[[], list[str]] | None = None,
    startup_only: bool = False,
    dead_health_statuses: Sequence[int] = (500, 503),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 0.25,
    fatal_grace: float = 2.0,
) -> dict[str, Any]:
    """Poll logs, container state and the HTTP endpoints until ready or a reason to stop.

    ``read_logs()`` returns new lines (appended to ``log_lines``); ``container_state()``
    returns {"running": bool, "exit_code": int | None, "restarted": bool};
    ``probe(path)`` returns (HTTP status or None when nothing answers, body);
    ``full_log()`` (optional) returns the container's whole log; once the container stopped it
    replaces what the stream delivered (a follow stream may lag behind, or go on across a
    restart). ``startup_only``: the container was already running, so a failure line after
    its ready line does not end the wait, and a server whose probes answer is ready whatever
    its log holds (a fatal line ends the wait only while the probes fail).
    ``dead_health_statuses``: the /health answers that mean a dead engine (health_semantics()).

    Returns ready (bool), reason (ready, fatal_log, exited, unhealthy, timeout), kind (failure
    kind from vllm_logs.FAILURE_KINDS or None), proof (log lines), exit_code, seconds (until the
    end), health_ok_seconds (first /health 200), fatal_seconds (first fatal line seen),
    health_status (the last /health answer, None without one), models (ids /v1/models listed),
    log_tail.
    """
    start = clock()
    result: dict[str, Any] = {
        "ready": False,
        "reason": None,
        "kind": None,
        "proof": [],
        "exit_code": None,
        "seconds": None,
        "health_ok_seconds": None,
        "fatal_seconds": None,
        "health_status": None,
        "models": [],
        "log_tail": [],
    }
    started_up = False
    dead_since: float | None = None

    def finish(reason: str) -> dict[str, Any]:
        result["reason"] = reason
        result["seconds"] = round(clock() - start, 2)
        if reason != "ready":
            # A running container's fatal line is from its startup; a later one is not judged.
            judged = (
                startup_section(log_lines) if startup_only and reason == "fatal_log" else log_lines
            )
            kind, proof = failure_from_log(judged)
            if reason == "unhealthy":
                proof = [
                    f"GET /health answered HTTP {result['health_status']}: the engine is dead",
                    *proof,
                ][:MAX_PROOF_LINES]
            result["kind"] = kind
            result["proof"] = proof
            if kind is None and reason in ("exited", "unhealthy"):
                result["kind"] = "engine_failed"
        result["log_tail"] = log_lines[-LOG_TAIL_LINES:]
        return result

    while True:
        for line in read_logs():
            log_lines.append(line)
            if startup_only and started_up:
                continue
            if result["fatal_seconds"] is None and is_fatal_line(line):
                result["fatal_seconds"] = round(clock() - start, 2)
            if READY_RE.search(clean_line(line)):
                started_up = True
        state = container_state()
        if not state.get("running") or state.get("restarted"):
            if full_log is not None:
                complete = full_log()
                if complete:
                    log_lines[:] = complete
            result["exit_code"] = state.get("exit_code")
            return finish("exited")
        now = clock()
        fatal_due = (
            result["fatal_seconds"] is not None
            and now - start - result["fatal_seconds"] >= fatal_grace
        )
        # A starting container stops being probed at its first fatal line. A running one is
        # judged by its probes first: a server that answers is up, whatever its log says (the
        # lines before the ready line may have rotated out, and then nothing marks the end of
        # its startup).
        if result["fatal_seconds"] is not None and not startup_only:
            if fatal_due:
                return finish("fatal_log")
        else:
            status, _ = probe("/health")
            result["health_status"] = status
            if status in dead_health_statuses:
                dead_since = now if dead_since is None else dead_since
                if now - dead_since >= fatal_grace:
                    return finish("unhealthy")
            else:
                dead_since = None
            if status == 200:
                if result["health_ok_seconds"] is None:
                    result["health_ok_seconds"] = round(now - start, 2)
                status, body = probe("/v1/models")
                if status == 200:
                    listed, ids = models_listed(body, served_names)
                    result["models"] = ids
                    if listed:
                        result["ready"] = True
                        log_lines.extend(read_logs())
                        return finish("ready")
            if fatal_due:
                return finish("fatal_log")
        if now - start >= timeout:
            return finish("timeout")
        sleep(interval)


__all__ = [
    "FAILURE_KINDS",
    "LogFollower",
    "failure_from_log",
    "health_semantics",
    "wait_until_ready",
]
