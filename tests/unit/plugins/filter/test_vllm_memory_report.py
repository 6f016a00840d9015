"""Tests of the vllm_memory_report filter on real vLLM logs (tests/fixtures/vllm_logs)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_serving.plugins.filter import vllm_memory_report as filter_file
from ansible_collections.llmops.gpu_serving.plugins.module_utils import vllm_logs

REPO_ROOT = Path(__file__).resolve().parents[4]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "vllm_logs"
SEED = FIXTURES / "v0_0.8.5_tp4_seed_success.log"


def test_filter_is_registered_under_its_documented_name():
    filters = filter_file.FilterModule().filters()

    assert filters == {"vllm_memory_report": filter_file.vllm_memory_report}


def test_filter_uses_the_module_utils_parser():
    # One implementation: the filter must not carry a parser of its own.
    assert filter_file.parse_memory_report is vllm_logs.parse_memory_report


@pytest.mark.parametrize(
    "fixture",
    [
        "v0_0.8.5_tp4_seed_success.log",
        "v1_0.10.1.1_tp2_vllmworker_tp_success.log",
        "fail_cuda_oom_worker_tp0_enginecore_failed.log",
    ],
)
def test_string_list_of_lines_and_bytes_give_the_same_report(fixture):
    text = (FIXTURES / fixture).read_text(encoding="utf-8")
    expected = vllm_logs.parse_memory_report(text)

    assert filter_file.vllm_memory_report(text) == expected
    assert filter_file.vllm_memory_report(text.splitlines()) == expected
    assert filter_file.vllm_memory_report(tuple(text.splitlines())) == expected
    assert filter_file.vllm_memory_report(text.encode("utf-8")) == expected


def test_seed_figures_through_the_filter():
    report = filter_file.vllm_memory_report(SEED.read_text(encoding="utf-8"))

    assert (report["kv_cache_gib"], report["weights_gib"], report["max_concurrency"]) == (
        4.30,
        14.25,
        5.73,
    )


@pytest.mark.parametrize("value", [None, 42, {"stdout": "INFO"}, ["INFO", 3]])
def test_other_input_is_refused(value):
    with pytest.raises(AnsibleFilterError, match="string or a list of strings"):
        filter_file.vllm_memory_report(value)


def test_filter_in_a_playbook(tmp_path):
    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_bin.exists():
        playbook_bin = shutil.which("ansible-playbook")
    if not playbook_bin:
        pytest.skip("ansible-playbook is not installed beside this Python")
    playbook = tmp_path / "report.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Write the report of the seed log\n"
        "      ansible.builtin.copy:\n"
        "        dest: " + str(tmp_path / "report.json") + "\n"
        "        content: >-\n"
        "          {{ lookup('ansible.builtin.file', '" + str(SEED) + "')\n"
        "             | llmops.gpu_serving.vllm_memory_report | to_json }}\n",
        encoding="utf-8",
    )
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"))
    result = subprocess.run(
        [
            str(playbook_bin),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report == vllm_logs.parse_memory_report(SEED.read_text(encoding="utf-8").rstrip("\n"))
