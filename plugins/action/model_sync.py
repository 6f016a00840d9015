# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for llmops.gpu_serving.model_sync: live progress on the controller.

A 60 GB download must not look hung. The plugin starts the module asynchronously (the same
async_wrapper that ``async:`` uses), then every ``progress_interval`` seconds asks
async_status whether it finished and, while it has not, reads the small JSON progress file the
module rewrites about once a second and prints bytes, rate and ETA. The module itself knows
nothing of this: without the plugin (``progress: false``, ``async:`` on the task, check mode)
it runs like any module.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (
    MANIFEST_NAME,
    format_progress,
)

display = Display()

MODULE = "llmops.gpu_serving.model_sync"
# Probes (one shell command each, no module run) start quickly and back off to at most
# PROBE_MAX_SECONDS, so that a model already in sync (well under a second of module time) is
# not held for an interval, and a job that died is noticed within seconds.
PROBE_FIRST_SECONDS = 0.1
PROBE_MAX_SECONDS = 0.5
DONE_MARK = "llmops-model-sync-done"
ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file")
# The module writes its progress file (with its pid) first thing; one that has not after this
# long never started.
STARTUP_GRACE_SECONDS = 45
ALIVE_MARK = "llmops-model-sync-alive"


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        show_progress = boolean(args.get("progress", True), strict=False)
        interval = max(1, int(args.get("progress_interval", 10)))
        timeout = max(1, int(args.get("sync_timeout", 86400)))

        if (
            not show_progress
            or args.get("state", "present") == "absent"
            or self._task.check_mode
            or self._task.async_val
            or self._connection.has_native_async
        ):
            wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
            result.update(
                self._execute_module(
                    module_name=MODULE, module_args=args, task_vars=task_vars, wrap_async=wrap_async
                )
            )
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result

        # A model already in place (the common re-run) finishes in this one plain module run;
        # only a sync with bytes to fetch or hash pays for the async start and the polling. A
        # dest without a manifest has everything to do: no need to ask.
        if self._has_manifest(args.get("dest", "")):
            quick = self._execute_module(
                module_name=MODULE,
                module_args=dict(args, defer_long_work=True),
                task_vars=task_vars,
            )
            if not quick.get("deferred"):
                self._remove_tmp_path(self._connection._shell.tmpdir)
                result.update(quick)
                return result

        # Unpredictable name: the module may run as root and /tmp is shared.
        progress_file = f"/tmp/.llmops-model-sync-{uuid.uuid4().hex}.json"
        args["progress_file"] = progress_file
        saved_async = self._task.async_val
        self._task.async_val = timeout
        try:
            started = self._execute_module(
                module_name=MODULE, module_args=args, task_vars=task_vars, wrap_async=True
            )
        finally:
            # The task executor polls tasks whose async_val is set; this one we poll ourselves.
            self._task.async_val = saved_async
        if started.get("failed") or not started.get("ansible_job_id"):
            result.update(started)
            return result

        final = self._wait(started, progress_file, interval, timeout, task_vars)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in ASYNC_KEYS:
            final.pop(key, None)
        result.update(final)
        return result

    def _wait(self, started, progress_file, interval, timeout, task_vars):
        """Poll the job until it finished; returns its result.

        Each poll is one shell command (no module run): it reads the progress file, asks
        whether the job file still says "started", and whether the module's process runs. So
        polls are cheap enough to start at PROBE_FIRST_SECONDS: a sync that takes a second is
        reported a fraction of a second after it ended, not at the next doubling of a backoff
        of async_status runs. async_status runs once, for the result itself.
        """
        jid = started["ansible_job_id"]
        async_dir = self._remote_expand_user(
            self.get_shell_option("async_dir", default="~/.ansible_async")
        )
        job_file = started.get("results_file") or f"{async_dir}/{jid}"
        status_args = {"jid": jid, "mode": "status", "_async_dir": async_dir}
        host = task_vars.get("inventory_hostname", "?") if task_vars else "?"
        dest = self._task.args.get("dest", "")
        begun = time.monotonic()
        deadline = begun + timeout
        delay = PROBE_FIRST_SECONDS
        last_line = None
        last_shown = begun
        pid = None
        while True:
            time.sleep(delay)
            delay = min(PROBE_MAX_SECONDS, delay * 1.5)
            probe = self._probe(progress_file, job_file, pid)
            if probe["done"]:
                status = self._settle(status_args, task_vars)
                if status:
                    break
            if time.monotonic() > deadline:
                self._cleanup(progress_file, job_file)
                return {
                    "failed": True,
                    "msg": f"model_sync did not finish within sync_timeout ({timeout} s)",
                }
            progress = probe["progress"]
            if progress is not None and isinstance(progress.get("pid"), int):
                pid = progress["pid"]
            # The async wrapper records no result when it dies with the module (SIGKILL, the
            # OOM killer, a reboot): the job would read "started" until sync_timeout. The module
            # names its pid in the progress file it writes first thing; a job whose process is
            # gone, or that never wrote that file, is dead unless a result appears now.
            never_started = pid is None and time.monotonic() - begun > STARTUP_GRACE_SECONDS
            if probe["alive"] is False or never_started:
                status = self._settle(status_args, task_vars)
                if status:
                    break
                self._cleanup(progress_file, job_file)
                what = (
                    f"its process (pid {pid}) is gone"
                    if pid is not None
                    else f"it did not start within {STARTUP_GRACE_SECONDS} s"
                )
                return {
                    "failed": True,
                    "msg": (
                        f"model_sync on {host} stopped without a result: {what} and async job "
                        f"{jid} never finished (killed, out of memory, or the host rebooted). "
                        "Files already verified are in place; run again to resume the rest."
                    ),
                }
            line = format_progress(progress) if progress is not None else None
            now = time.monotonic()
            if line and line != last_line and now - last_shown >= interval:
                display.display(f"{host}: model_sync {dest}: {line}")
                last_line, last_shown = line, now
        self._cleanup(None, job_file)
        return status

    def _has_manifest(self, dest):
        manifest = shlex.quote(f"{str(dest).rstrip('/')}/{MANIFEST_NAME}")
        reply = self._low_level_execute_command(f"test -e {manifest}", sudoable=True)
        return reply.get("rc") == 0

    def _cleanup(self, progress_file, job_file):
        """Remove the job file (what async_status mode=cleanup does) and a progress file left
        by a module that died, in one command."""
        paths = " ".join(shlex.quote(p) for p in (progress_file, job_file) if p)
        self._low_level_execute_command(f"rm -f {paths}", sudoable=True)

    def _status(self, status_args, task_vars):
        return self._execute_module(
            module_name="ansible.legacy.async_status", module_args=status_args, task_vars=task_vars
        )

    def _settle(self, status_args, task_vars):
        """A module that just exited may not have its result written yet: ask a few times."""
        status = {}
        for _attempt in range(3):
            status = self._status(status_args, task_vars)
            if status.get("finished") or (status.get("failed") and "finished" not in status):
                return status
            time.sleep(1.0)
        return {}

    def _probe(self, progress_file, job_file, pid):
        """One shell command: {progress (dict or None), done (the job file holds a result),
        alive (whether process ``pid`` runs; None while no pid is known)}.

        The wrapper replaces the job file atomically (a rename) when the module ends; until
        then it holds ``{"started": ..., "finished": ...}``. Without /proc (not Linux) the
        process counts as alive: only sync_timeout applies.
        """
        job = shlex.quote(job_file)
        command = (
            f"cat {shlex.quote(progress_file)} 2>/dev/null; echo; "
            f"if [ -s {job} ] && ! grep -q '\"started\"' {job}; then echo {DONE_MARK}; fi"
        )
        if pid is not None:
            command += (
                f"; if [ ! -d /proc/self ] || [ -d /proc/{int(pid)} ]; then echo {ALIVE_MARK}; fi"
            )
        reply = self._low_level_execute_command(command, sudoable=True)
        stdout = reply.get("stdout", "") or ""
        lines = [line for line in stdout.splitlines() if line.strip()]
        marks = {line.strip() for line in lines if line.strip() in (DONE_MARK, ALIVE_MARK)}
        text = "\n".join(line for line in lines if line.strip() not in marks)
        try:
            progress = json.loads(text) if text else None
        except ValueError:
            progress = None
        return {
            "progress": progress if isinstance(progress, dict) else None,
            "done": DONE_MARK in marks,
            "alive": None if pid is None else ALIVE_MARK in marks,
        }
