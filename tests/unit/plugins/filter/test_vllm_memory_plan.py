"""Unit tests for the vllm_memory_plan filter (the arithmetic itself: test_vllm_memory.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_serving.plugins.filter.vllm_memory_plan import (
    FilterModule,
    vllm_memory_plan,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import plan_memory

REPO_ROOT = Path(__file__).resolve().parents[4]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "model_configs"
QWEN3_30B_A3B_WEIGHTS = 61_064_245_248  # SOURCES.md
GIB = 2**30

# The call shown in the role's preflight: the seed's flags, weights, and the logged KV size.
SEED_CALL = {
    "tensor_parallel_size": 4,
    "dtype": "half",
    "max_model_len": 32768,
    "block_size": 32,
    "gpu_memory_utilization": 0.93,
    "gpu_memory_gib": 21.66,
    "weights_bytes": QWEN3_30B_A3B_WEIGHTS,
    "kv_cache_gib": 5867 * 786_432 / GIB,
}


@pytest.fixture
def qwen3_config_text() -> str:
    return (FIXTURES / "qwen3-30b-a3b.json").read_text()


def test_filter_is_registered():
    assert FilterModule().filters() == {"vllm_memory_plan": vllm_memory_plan}


def test_seed_call_gives_the_logged_figures(qwen3_config_text):
    plan = vllm_memory_plan(json.loads(qwen3_config_text), **SEED_CALL)
    assert plan["kv_bytes_per_token"] == 24_576
    assert plan["block_bytes"] == 786_432
    assert plan["gpu_blocks"] == 5867
    assert plan["kv_cache_tokens"] == 187_744
    assert plan["max_concurrency"] == 5.73
    assert plan["fits"] is True
    assert "suggestion" not in plan


def test_filter_and_module_utils_agree(qwen3_config_text):
    config = json.loads(qwen3_config_text)
    assert vllm_memory_plan(config, **SEED_CALL) == plan_memory(config, **SEED_CALL)


def test_json_text_input_is_parsed(qwen3_config_text):
    # lookup('file', .../config.json) hands the filter a string
    assert vllm_memory_plan(qwen3_config_text, **SEED_CALL)["gpu_blocks"] == 5867


def test_numbers_given_as_strings_are_accepted(qwen3_config_text):
    as_strings = {key: str(value) for key, value in SEED_CALL.items() if key != "dtype"}
    plan = vllm_memory_plan(qwen3_config_text, dtype="half", **as_strings)
    assert plan["gpu_blocks"] == 5867
    assert plan["inputs"]["tensor_parallel_size"] == 4


def test_suggest_adds_what_would_fit():
    config = json.loads((FIXTURES / "mistral-7b-v0.1.json").read_text())
    plan = vllm_memory_plan(
        config, suggest=True, max_model_len=32768, gpu_memory_gib=20.0, weights_bytes=14_483_464_192
    )
    assert plan["fits"] is False
    assert plan["suggestion"]["fits"] is False
    assert plan["suggestion"]["largest_fitting_max_model_len"] == 25_120
    assert plan["suggestion"]["smallest_fitting_gpu_memory_utilization"] == 0.95
    assert "plan" not in plan["suggestion"]


def test_suggest_with_a_concurrency_target_given_as_text(qwen3_config_text):
    plan = vllm_memory_plan(qwen3_config_text, suggest=True, min_concurrency="6", **SEED_CALL)
    # 187,744 tokens are 5.73 x 32,768: six full requests do not fit
    assert plan["suggestion"]["fits"] is False
    assert plan["suggestion"]["largest_fitting_max_model_len"] == 31_290  # floor(187,744 / 6)


@pytest.mark.parametrize(
    ("model_config", "options", "message"),
    [
        ("{not json", {}, "input is not JSON"),
        (["a", "list"], {}, "input must be the model's config.json"),
        (None, {}, "input must be the model's config.json"),
        ("QWEN3", {"block_size": 24}, "block_size must be one of"),
        ("QWEN3", {"tensor_parallel_size": "four"}, "tensor_parallel_size must be a number"),
        ("QWEN3", {"gpu_memory_utilization": 1.2}, "gpu_memory_utilization must be a number in"),
        ("QWEN3", {"kv_cache_dtype": "int4"}, "kv_cache_dtype must be one of"),
        ("QWEN3", {"no_such_option": 1}, "no_such_option"),
    ],
)
def test_errors_become_filter_errors(qwen3_config_text, model_config, options, message):
    if model_config == "QWEN3":
        model_config = qwen3_config_text
        options = {**SEED_CALL, **options}
    with pytest.raises(AnsibleFilterError, match=message):
        vllm_memory_plan(model_config, **options)


def test_filter_through_ansible_by_its_fqcn(tmp_path):
    """Run the filter the way a playbook does: resolved from the checkout by FQCN."""
    ansible = Path(sys.executable).with_name("ansible")
    if not ansible.exists():
        pytest.skip("the ansible CLI is not installed beside this Python")
    expression = (
        "{{ lookup('ansible.builtin.file', '"
        + str(FIXTURES / "qwen3-30b-a3b.json")
        + "') | llmops.gpu_serving.vllm_memory_plan(tensor_parallel_size=4, dtype='half', "
        "max_model_len=32768, block_size=32, gpu_memory_utilization=0.93, gpu_memory_gib=21.66, "
        f"weights_bytes={QWEN3_30B_A3B_WEIGHTS}, kv_cache_gib=4.30) }}}}"
    )
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO_ROOT / "collections"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path),
        "ANSIBLE_HOME": str(tmp_path),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [str(ansible), "localhost", "-m", "ansible.builtin.debug", "-a", f"msg={expression}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = json.loads(result.stdout)
    msg = output["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    assert msg["gpu_blocks"] == 5870  # exactly 4.30 GiB: see test_vllm_memory.py
    assert msg["max_concurrency"] == 5.73
    assert msg["cpu_blocks"] is None
