# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of llmops.gpu_serving.validate_inputs: no connection, no module run.

The rules live in module_utils/input_rules.py; this file only reads the roles' argument specs,
templates the variables the play defines and turns the report into a task result.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.llmops.gpu_serving.plugins.module_utils.input_rules import (
    PLAYBOOK_VARIABLES,
    ROLES,
    check_inputs,
    format_failure,
)

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"


def load_specs(roles: list[str]) -> dict[str, dict]:
    """Each role's options over all its entry points (main, verify, benchmark): site.yml's
    first play also guards the variables that playbooks/benchmark.yml and the verify plays
    read. The main entry point wins where two describe the same variable."""
    specs = {}
    for role in roles:
        path = ROLES_DIR / role / "meta" / "argument_specs.yml"
        with path.open(encoding="utf-8") as handle:
            entry_points = yaml.safe_load(handle)["argument_specs"]
        options: dict = {}
        for name, entry_point in entry_points.items():
            if name != "main":
                options.update(entry_point.get("options") or {})
        options.update(entry_points["main"].get("options") or {})
        specs[role] = options
    return specs


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        roles = self._task.args.get("roles") or list(ROLES)
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            return dict(result, failed=True, msg=f"roles: unknown role {', '.join(unknown)}")
        specs = load_specs(roles)
        known = {name for options in specs.values() for name in options} | PLAYBOOK_VARIABLES
        provided = {}
        for name in sorted(known & set(task_vars)):
            try:
                provided[name] = self._templar.template(task_vars[name])
            except AnsibleError:
                # A value that needs the host's facts (the kernel headers package) is checked
                # by its role once the facts are there.
                continue
        host = task_vars.get("inventory_hostname", "this host")
        report = check_inputs(
            specs, provided, sorted(task_vars), groups=task_vars.get("groups"), host=host
        )
        result["changed"] = False
        if report.warnings:
            result["warnings"] = report.warnings
        if report.errors:
            result.update(failed=True, msg=format_failure(host, report))
        else:
            result["msg"] = f"{len(provided)} variables set for {host} are valid"
        return result
