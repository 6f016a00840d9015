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
        deadline = time.monotonic() + timeout
        delay = FIRST_POLL_SECONDS
        last_line = None
        while True:
            time.sleep(delay)
            delay = min(interval, delay * 2)
            status = self._execute_module(
                module_name="ansible.legacy.async_status",
                module_args=status_args,
                task_vars=task_vars,
            )
            if status.get("finished") or (status.get("failed") and "finished" not in status):
                break
            if time.monotonic() > deadline:
                return {
                    "failed": True,
                    "msg": f"model_sync did not finish within sync_timeout ({timeout} s)",
                }
            line = self._read_progress(progress_file)
            if line and line != last_line:
                display.display(f"{host}: model_sync {dest}: {line}")
                last_line = line
        self._execute_module(
            module_name="ansible.legacy.async_status",
            module_args=dict(status_args, mode="cleanup"),
            task_vars=task_vars,
        )
        return status

    def _read_progress(self, path):
        reply = self._low_level_execute_command(f"cat {shlex.quote(path)}", sudoable=True)
        if reply.get("rc") != 0:
            return None
        try:
            return format_progress(json.loads(reply.get("stdout", "")))
        except (ValueError, TypeError):
            return None
