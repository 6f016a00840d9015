# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vllm_live_load filter: a vLLM /metrics page -> running, waiting, KV-cache usage.

The documentation lives in vllm_live_load.yml beside this file; the parsing is
module_utils.vllm_metrics, the same code the vllm_container module runs.
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_metrics import live_load


def vllm_live_load(page: Any) -> dict[str, Any]:
    """Return live_load() of a /metrics page given as a string (or bytes)."""
    if isinstance(page, bytes):
        page = page.decode("utf-8", errors="replace")
    if not isinstance(page, str):
        raise AnsibleFilterError(
            f"vllm_live_load expects the /metrics page as a string, got {type(page).__name__}"
        )
    return live_load(page)


class FilterModule:
    """Ansible's entry point for the filters in this file."""

    def filters(self) -> dict[str, Any]:
        return {"vllm_live_load": vllm_live_load}
