"""The engine option table, and every document that lists an engine option agreeing with it.

A choice added to one place and not another is what the table is for: these tests fail when
a module's DOCUMENTATION, the vllm_memory_plan filter's or the vllm_server role's argument
specs say otherwise than module_utils/vllm_options.py.
"""

from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container import (
    validate_options,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_flags import OWNED_FLAGS
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_memory import (
    KV_CACHE_DTYPE_BYTES,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_options import (
    DTYPE_CHOICES,
    ENGINE_OPTIONS,
    argument_spec,
    range_errors,
)
from ansible_collections.llmops.gpu_serving.plugins.modules import vllm_container, vllm_preflight

ROOT = Path(__file__).resolve().parents[4]
ROLE_SPECS = yaml.safe_load((ROOT / "roles/vllm_server/meta/argument_specs.yml").read_text())
ROLE_OPTIONS = ROLE_SPECS["argument_specs"]["main"]["options"]
FILTER_DOC = yaml.safe_load((ROOT / "plugins/filter/vllm_memory_plan.yml").read_text())


def module_options(module) -> dict:
    return yaml.safe_load(module.DOCUMENTATION)["options"]


@pytest.mark.parametrize("module", [vllm_container, vllm_preflight], ids=lambda m: m.__name__)
def test_the_modules_document_the_tables_types_and_choices(module):
    documented = module_options(module)
    listed = [name for name in ENGINE_OPTIONS if name in documented]
    assert len(listed) >= 5, listed
    for name in listed:
        option, doc = ENGINE_OPTIONS[name], documented[name]
        assert doc["type"] == option.type, name
        if option.choices is not None:
            assert doc.get("choices") == list(option.choices), name


def test_the_role_offers_the_tables_choices():
    for name, option in ENGINE_OPTIONS.items():
        role = ROLE_OPTIONS.get(f"vllm_server_{name}")
        if role is None or option.choices is None:
            continue
        assert role["choices"] == list(option.choices), name


def test_the_planner_documents_what_it_sizes():
    options = FILTER_DOC["DOCUMENTATION"]["options"]
    assert options["dtype"]["choices"] == list(DTYPE_CHOICES)
    # The planner sizes more KV formats than the launcher passes (float16 and bfloat16 are
    # 0.32's, not 0.8.5's): its own table, KV_CACHE_DTYPE_BYTES.
    assert options["kv_cache_dtype"]["choices"] == list(KV_CACHE_DTYPE_BYTES)
    assert set(ENGINE_OPTIONS["kv_cache_dtype"].choices) <= set(KV_CACHE_DTYPE_BYTES)


def test_the_launcher_refuses_a_dtype_outside_the_table():
    errors = validate_options({"name": "vllm", "image": "x", "model": "/m", "dtype": "fp4"})
    assert errors == [f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got 'fp4'"]


def test_typed_flags_are_owned_by_their_option():
    for name, option in ENGINE_OPTIONS.items():
        assert OWNED_FLAGS[option.flag] == name


def test_argument_spec_entries():
    spec = argument_spec(("dtype", "gpu_memory_utilization"), dtype="auto")
    assert spec == {
        "dtype": {"type": "str", "choices": list(DTYPE_CHOICES), "default": "auto"},
        "gpu_memory_utilization": {"type": "float"},
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"gpu_memory_utilization": 0}, ["gpu_memory_utilization must be in (0, 1], got 0"]),
        ({"gpu_memory_utilization": 1.5}, ["gpu_memory_utilization must be in (0, 1], got 1.5"]),
        ({"gpu_memory_utilization": 1}, []),
        ({"tensor_parallel_size": 0}, ["tensor_parallel_size must be in [1, inf], got 0"]),
        ({"swap_space": -1}, ["swap_space must be in [0, inf], got -1"]),
        (
            {"kv_cache_dtype": "fp8_ds_mla"},
            ["kv_cache_dtype must be one of auto, fp8, fp8_e4m3, fp8_e5m2, got 'fp8_ds_mla'"],
        ),
        ({"enable_chunked_prefill": True, "max_model_len": None}, []),
    ],
)  # fmt: skip
def test_range_errors(params, expected):
    assert range_errors(params) == expected
