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
    format_progress,
)

display = Display()

MODULE = "llmops.gpu_serving.model_sync"
# Status checks start quickly and back off to progress_interval, so that a model already in
# sync (well under a second of module time) is not held for a whole interval.
FIRST_POLL_SECONDS = 0.5
ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file")
# Status checks at least this often, whatever progress_interval is, so that a job that died
# with its async wrapper is noticed within a minute rather than after sync_timeout.
LIVENESS_POLL_SECONDS = 15
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

        final = self._wait(started["ansible_job_id"], progress_file, interval, timeout, task_vars)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in ASYNC_KEYS:
            final.pop(key, None)
        result.update(final)
        return result

    def _wait(self, jid, progress_file, interval, timeout, task_vars):
        async_dir = self._remote_expand_user(
            self.get_shell_option("async_dir", default="~/.ansible_async")
        )
        status_args = {"jid": jid, "mode": "status", "_async_dir": async_dir}
        host = task_vars.get("inventory_hostname", "?") if task_vars else "?"
        dest = self._task.args.get("dest", "")
        started = time.monotonic()
        deadline = started + timeout
        delay = FIRST_POLL_SECONDS
        last_line = None
        last_shown = 0.0
        pid = None
        while True:
            time.sleep(delay)
            delay = min(interval, LIVENESS_POLL_SECONDS, delay * 2)
            status = self._status(status_args, task_vars)
            if status.get("finished") or (status.get("failed") and "finished" not in status):
                break
            if time.monotonic() > deadline:
                return {
                    "failed": True,
                    "msg": f"model_sync did not finish within sync_timeout ({timeout} s)",
                }
            progress, alive = self._read_progress(progress_file, pid)
            if progress is not None:
                pid = progress.get("pid") if isinstance(progress.get("pid"), int) else pid
            # The async wrapper records no result when it dies with the module (SIGKILL, the
            # OOM killer, a reboot): the job would read "started" until sync_timeout. The module
            # names its pid in the progress file it writes first thing; a job whose process is
            # gone, or that never wrote that file, is dead unless a result appears now.
            never_started = pid is None and time.monotonic() - started > STARTUP_GRACE_SECONDS
            if alive is False or never_started:
                status = self._settle(status_args, task_vars)
                if status.get("finished") or status.get("failed"):
                    break
                self._low_level_execute_command(
                    f"rm -f {shlex.quote(progress_file)}", sudoable=True
                )
                self._status(dict(status_args, mode="cleanup"), task_vars)
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
            if line and line != last_line and now - last_shown >= interval - FIRST_POLL_SECONDS:
                display.display(f"{host}: model_sync {dest}: {line}")
                last_line, last_shown = line, now
        self._status(dict(status_args, mode="cleanup"), task_vars)
        return status

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

    def _read_progress(self, path, pid):
        """(progress dict or None, whether process ``pid`` still runs: None when no pid is
        known yet) in one remote command.

        Without /proc (not Linux) the process counts as alive: only sync_timeout applies.
        """
        command = f"cat {shlex.quote(path)} 2>/dev/null"
        if pid is not None:
            command += (
                f"; echo; if [ ! -d /proc/self ] || [ -d /proc/{int(pid)} ]; "
                f"then echo {ALIVE_MARK}; fi"
            )
        reply = self._low_level_execute_command(command, sudoable=True)
        stdout = reply.get("stdout", "") or ""
        alive = None if pid is None else ALIVE_MARK in stdout
        text = stdout.replace(ALIVE_MARK, "").strip()
        try:
            progress = json.loads(text) if text else None
        except ValueError:
            progress = None
        return (progress if isinstance(progress, dict) else None), alive
