# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vllm_serving_report filter: a vllm_container result -> the serving report; and
vllm_benchmark_record: a vllm_benchmark result -> what the report keeps of it.

The documentation lives in vllm_serving_report.yml and vllm_benchmark_record.yml beside this
file; the logic is module_utils.vllm_report.
"""

import inspect
from datetime import UTC, datetime
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_report import (
    benchmark_record,
    serving_report,
)

REQUIRED = (
    "host",
    "served_model_name",
    "container_name",
    "image",
    "model_host_path",
    "model_container_path",
)


# Every keyword serving_report() takes, read from its signature rather than listed again.
_OPTIONS = {
    name
    for name, parameter in inspect.signature(serving_report).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def vllm_benchmark_record(benchmark: Any, settings: Any = None) -> dict[str, Any]:
    """Return benchmark_record() of a vllm_benchmark result, measured now (UTC)."""
    record = benchmark_record(benchmark, settings, _now())
    if record is None:
        raise AnsibleFilterError(
            "vllm_benchmark_record expects a vllm_benchmark result with levels"
        )
    return record


def vllm_serving_report(result: Any, **options: Any) -> dict[str, Any]:
    """Return serving_report() of a vllm_container result; the time is now (UTC) if not given."""
    if not isinstance(result, dict):
        raise AnsibleFilterError(
            f"vllm_serving_report expects a vllm_container result (a dict), got "
            f"{type(result).__name__}"
        )
    missing = [name for name in REQUIRED if not options.get(name)]
    if missing:
        raise AnsibleFilterError(f"vllm_serving_report needs {', '.join(missing)}")
    unknown = set(options) - _OPTIONS
    if unknown:
        raise AnsibleFilterError(f"vllm_serving_report has no option {', '.join(sorted(unknown))}")
    if not options.get("now"):
        options["now"] = _now()
    return serving_report(result, **options)


class FilterModule:
    """Ansible's entry point for the filters in this file."""

    def filters(self) -> dict[str, Any]:
        return {
            "vllm_serving_report": vllm_serving_report,
            "vllm_benchmark_record": vllm_benchmark_record,
        }
