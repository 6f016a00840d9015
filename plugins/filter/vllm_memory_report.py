# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vllm_memory_report filter: vLLM startup log text -> memory budget dict.

The documentation lives in vllm_memory_report.yml beside this file. The parsing is
module_utils.vllm_logs, the same code the vllm_container module runs.
"""

from collections.abc import Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    parse_memory_report,
)


def vllm_memory_report(log: Any) -> dict[str, Any]:
    """Return parse_memory_report() of a log given as one string or as a list of lines."""
    if isinstance(log, bytes):
        text = log.decode("utf-8", errors="replace")
    elif isinstance(log, str):
        text = log
    elif isinstance(log, Sequence) and all(isinstance(line, str) for line in log):
        # stdout_lines of a command task, or docker_container_info's output split by hand.
        text = "\n".join(log)
    else:
        raise AnsibleFilterError(
            "vllm_memory_report expects the log as a string or a list of strings, "
            f"got {type(log).__name__}"
        )
    return parse_memory_report(text)


class FilterModule:
    """Ansible's entry point for the filters in this file."""

    def filters(self) -> dict[str, Any]:
        return {"vllm_memory_report": vllm_memory_report}
