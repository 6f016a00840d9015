"""Tests of the vllm_preflight module: main() on a model directory shaped like the seed's."""

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from seed_deployment import SEED_ENGINE

from ansible_collections.llmops.gpu_serving.plugins.modules import vllm_preflight

CONFIGS = Path(__file__).resolve().parents[3] / "fixtures" / "model_configs"
SEED_GPUS = [{"index": i, "memory_total_mib": 22528} for i in range(4)]
SEED_FLAGS = dict(SEED_ENGINE)


@pytest.fixture
def seed_model(tmp_path):
    """config.json of Qwen3-30B-A3B and an index whose total_size is the real one."""
    model = tmp_path / "qwen3-30b-a3b"
    model.mkdir()
    (model / "config.json").write_text((CONFIGS / "qwen3-30b-a3b.json").read_text())
    index = {
        "metadata": {"total_size": 61_064_245_248},
        "weight_map": {"lm_head.weight": "model-00016-of-00016.safetensors"},
    }
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    (model / "model-00016-of-00016.safetensors").write_bytes(b"\0" * 64)
    return model


def run_module(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        vllm_preflight.main()
    result = json.loads(capsys.readouterr().out)
    assert (exited.value.code != 0) == bool(result.get("failed"))
    return bool(result.get("failed")), result


def test_seed_fits(capsys, seed_model):
    failed, result = run_module(capsys, model_path=str(seed_model), gpus=SEED_GPUS, **SEED_FLAGS)
    assert not failed
    assert result["changed"] is False
    assert result["fits"] is True
    assert result["gpu_memory_gib"] == 21.66
    assert result["plan"]["gpu_blocks"] == pytest.approx(5867, rel=0.01)
    assert result["model"] == {
        "weights_bytes": 61_064_245_248,
        "weights_source": "index metadata.total_size",
    }


def test_runs_in_check_mode(capsys, seed_model):
    failed, result = run_module(
        capsys, model_path=str(seed_model), gpus=SEED_GPUS, _ansible_check_mode=True, **SEED_FLAGS
    )
    assert not failed
    assert result["fits"] is True


def test_misfit_fails_with_numbers_and_the_way_out(capsys, seed_model):
    failed, result = run_module(
        capsys, model_path=str(seed_model), gpus=SEED_GPUS, min_concurrency=8, **SEED_FLAGS
    )
    assert failed
    assert result["msg"].startswith("vLLM preflight: the configuration does not fit: ")
    assert "8 x 32768 tokens wanted" in result["msg"]
    assert "would fit with max_model_len " in result["msg"]
    assert result["fits"] is False


def test_misfit_is_reported_without_failing_when_asked(capsys, seed_model):
    failed, result = run_module(
        capsys,
        model_path=str(seed_model),
        gpus=SEED_GPUS,
        min_concurrency=8,
        fail_on_misfit=False,
        **SEED_FLAGS,
    )
    assert not failed
    assert result["fits"] is False


def test_autotune_says_what_it_chose(capsys, seed_model):
    failed, result = run_module(
        capsys,
        model_path=str(seed_model),
        gpus=SEED_GPUS,
        min_concurrency=8,
        autotune=True,
        **SEED_FLAGS,
    )
    assert not failed
    assert result["autotuned"]["changed"] == {"max_model_len": result["settings"]["max_model_len"]}
    assert result["settings"]["max_model_len"] < 32768


def test_explicit_gpu_memory_wins_over_gpus(capsys, seed_model):
    failed, result = run_module(
        capsys, model_path=str(seed_model), gpu_memory_gib=21.0, gpus=SEED_GPUS, **SEED_FLAGS
    )
    assert not failed
    assert result["gpu_memory_gib"] == 21.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"gpus": SEED_GPUS[:2]}, "tensor_parallel_size 4 needs 4 GPUs, nvidia-smi lists 2"),
        ({"gpus": SEED_GPUS, "min_concurrency": -1}, "min_concurrency must be 0 or more"),
        (
            {"gpus": SEED_GPUS, "autotune_max_gpu_memory_utilization": 1.5},
            "autotune_max_gpu_memory_utilization must be in (0, 1]",
        ),
        ({}, "one of the following is required: gpus, gpu_memory_gib"),
    ],
)
def test_bad_input_is_named(capsys, seed_model, args, message):
    failed, result = run_module(capsys, model_path=str(seed_model), **SEED_FLAGS, **args)
    assert failed
    assert message in result["msg"]


def test_unsynced_model_is_named(capsys, tmp_path):
    failed, result = run_module(
        capsys, model_path=str(tmp_path / "absent"), gpus=SEED_GPUS, **SEED_FLAGS
    )
    assert failed
    assert "sync the model first" in result["msg"]


TURING_GPUS = [
    dict(gpu, name="NVIDIA GeForce RTX 2080 Ti", compute_capability="7.5") for gpu in SEED_GPUS
]


def test_bf16_on_the_seeds_cards_fails_naming_the_role_variable(capsys, seed_model):
    flags = dict(SEED_FLAGS, dtype="bfloat16")
    failed, result = run_module(
        capsys,
        model_path=str(seed_model),
        gpus=TURING_GPUS,
        variable_prefix="vllm_server_",
        **flags,
    )
    assert failed
    assert result["msg"] == (
        "vLLM preflight: vllm_server_dtype bfloat16 needs bf16, SM 8.0 or newer; GPU 0 "
        "(NVIDIA GeForce RTX 2080 Ti) is SM 7.5: set vllm_server_dtype to half"
    )
    assert "plan" not in result


def test_an_engine_off_the_gpus_can_skip_the_compatibility_check(capsys, seed_model):
    flags = dict(SEED_FLAGS, dtype="bfloat16")
    failed, result = run_module(
        capsys, model_path=str(seed_model), gpus=TURING_GPUS, check_compatibility=False, **flags
    )
    assert not failed, result["msg"]
    assert result["compatibility_notes"] == []


def test_an_e4m3_kv_cache_on_turing_warns_and_plans(capsys, seed_model):
    flags = dict(SEED_FLAGS, kv_cache_dtype="fp8")
    failed, result = run_module(capsys, model_path=str(seed_model), gpus=TURING_GPUS, **flags)
    assert not failed, result["msg"]
    # ansible-core 2.19 returns each warning as a WarningSummary with the text in event.msg.
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    assert warnings == [f"vLLM preflight: {note}" for note in result["compatibility_notes"]]
    assert warnings[0].startswith("vLLM preflight: kv_cache_dtype fp8 (e4m3) on SM 7.5")
    assert result["plan"]["kv_cache_gib"] > 0


def test_a_cluster_member_plans_its_own_ranks(capsys, seed_model):
    # Two of the seed's hosts, TP 8 across them: each runs 4 ranks on its 4 cards.
    flags = dict(SEED_FLAGS, tensor_parallel_size=8)
    failed, result = run_module(
        capsys, model_path=str(seed_model), gpus=SEED_GPUS, nnodes=2, **flags
    )
    assert not failed, result["msg"]
    assert result["gpu_memory_gib"] == 21.66
    # Eight ranks share the KV heads and the weights: more room per card than TP 4.
    _, alone = run_module(capsys, model_path=str(seed_model), gpus=SEED_GPUS, **SEED_FLAGS)
    assert result["plan"]["kv_cache_tokens"] > alone["plan"]["kv_cache_tokens"]


def test_a_layout_that_needs_more_gpus_than_the_host_has_is_refused(capsys, seed_model):
    flags = dict(SEED_FLAGS, tensor_parallel_size=8)
    failed, result = run_module(
        capsys,
        model_path=str(seed_model),
        gpus=SEED_GPUS,
        pipeline_parallel_size=2,
        nnodes=2,
        **flags,
    )
    assert failed
    assert result["msg"] == (
        "vLLM preflight: tensor_parallel_size 8 x pipeline_parallel_size 2 over 2 hosts needs "
        "8 GPUs per host, nvidia-smi lists 4"
    )
