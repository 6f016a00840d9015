"""vLLM command lines per version, image version detection and the CUDA floor check."""

import shlex
from pathlib import Path

import pytest
from seed_deployment import SEED_ENGINE, SEED_OTHER_FLAGS

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_flags import (
    FlagError,
    build_vllm_args,
    check_block_size,
    cuda_floor,
    detect_vllm_version,
    entrypoint_style,
    evaluate_cuda_requirement,
    flag_supported,
    mask_args,
    package_version_command,
    parse_cuda_requirement,
    parse_package_version,
    parse_version,
    split_extra_args,
)

STANDIN = Path(__file__).resolve().parents[3] / "harness" / "standin-vllm"
# NVIDIA_REQUIRE_CUDA of the CUDA base images vLLM's images build on (sources in
# tests/harness/standin-vllm/README.md).
REQUIRE_12_4 = (STANDIN / "require-cuda-12.4.txt").read_text().strip()
REQUIRE_12_8 = (STANDIN / "require-cuda-12.8.txt").read_text().strip()

# The seed deployment's flags (shared/seed/qwen3-30b-a3b-vllm-deployment.md).
SEED = {
    "model": "/qwen/qwen3-30b-a3b",
    "served_model_name": ["coder"],
    **SEED_ENGINE,
    **SEED_OTHER_FLAGS,
}
SEED_ARGS = shlex.split(
    "--model /qwen/qwen3-30b-a3b --served-model-name coder --tensor-parallel-size 4 --dtype half "
    "--max-model-len 32768 --max-num-batched-tokens 4096 --gpu-memory-utilization 0.93 "
    "--block-size 32 --enable-chunked-prefill --swap-space 16 --tokenizer-pool-size 56 "
    "--disable-custom-all-reduce"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v0.8.5", (0, 8, 5)),
        ("0.10.1.1", (0, 10, 1, 1)),
        ("0.9.0rc1", (0, 9, 0)),
        ("0.8.5.post1", (0, 8, 5)),
        ("v0.18.0-cu128", (0, 18, 0)),
        ("latest", None),
        ("nightly", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_seed_flags_on_its_own_version_are_the_seed_command_line():
    built = build_vllm_args(SEED, (0, 8, 5))
    assert built["args"] == SEED_ARGS
    assert built["dropped"] == []
    assert built["warnings"] == []


@pytest.mark.parametrize(
    ("version", "dropped"),
    [
        ((0, 8, 5), []),
        ((0, 9, 2), []),
        ((0, 10, 0), ["--tokenizer-pool-size"]),
        ((0, 10, 1, 1), ["--tokenizer-pool-size"]),
        ((0, 17, 1), ["--tokenizer-pool-size"]),
        ((0, 18), ["--swap-space", "--tokenizer-pool-size"]),
        ((0, 20, 1), ["--swap-space", "--tokenizer-pool-size"]),
    ],
)
def test_removed_flags_are_dropped_with_a_warning(version, dropped):
    built = build_vllm_args(SEED, version, on_unsupported="warn")
    assert sorted(item["flag"] for item in built["dropped"]) == dropped
    for flag in dropped:
        assert flag not in built["args"]
        assert any(flag in warning and "removed" in warning for warning in built["warnings"])
    # Nothing else of the seed is lost.
    assert "--disable-custom-all-reduce" in built["args"]
    assert built["args"][built["args"].index("--block-size") + 1] == "32"


def test_removed_flag_is_refused_with_fail():
    with pytest.raises(FlagError, match=r"--tokenizer-pool-size was removed in vLLM 0\.10\.0"):
        build_vllm_args(SEED, (0, 10, 1, 1), on_unsupported="fail")


def test_unknown_version_refuses_version_dependent_flags():
    with pytest.raises(FlagError, match="set vllm_version"):
        build_vllm_args(SEED, None)
    plain = {
        key: value
        for key, value in SEED.items()
        if key not in ("swap_space", "tokenizer_pool_size")
    }
    assert "--block-size" in build_vllm_args(plain, None)["args"]


def test_serve_entrypoint_takes_the_model_positionally():
    built = build_vllm_args(SEED, (0, 10, 1, 1), style="serve")
    assert built["args"][0] == "/qwen/qwen3-30b-a3b"
    assert "--model" not in built["args"]


ROPE = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


def test_rope_scaling_is_compact_json_before_0_11_1():
    # The seed's own spelling: --rope-scaling '{"rope_type":"yarn","factor":4.0,...}'.
    args = build_vllm_args({"rope_scaling": ROPE}, (0, 8, 5))["args"]
    assert args == [
        "--rope-scaling",
        '{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":32768}',
    ]


@pytest.mark.parametrize("version", [(0, 11, 1), (0, 13, 0), (0, 20, 1)])
def test_rope_scaling_becomes_hf_overrides_from_0_11_1(version):
    built = build_vllm_args({"rope_scaling": ROPE}, version)
    assert built["args"][0] == "--hf-overrides"
    assert '"rope_scaling": {"rope_type": "yarn"' in built["args"][1]
    assert "--rope-scaling" not in built["args"]
    assert any("--hf-overrides" in warning for warning in built["warnings"])


def test_rope_scaling_refused_next_to_hf_overrides_in_extra_args():
    options = {"rope_scaling": ROPE, "extra_args": ["--hf-overrides", '{"a": 1}']}
    with pytest.raises(FlagError, match="put rope_scaling inside"):
        build_vllm_args(options, (0, 13, 0))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-model-len", "4096"], "set the option max_model_len"),
        (["--max_model_len=4096"], "set the option max_model_len"),
        (["--api-key", "x"], "set the option api_key"),
        (["-tp", "2"], "set the option tensor_parallel_size"),
        (["--kv-cache-dtype", "fp8"], "set the option kv_cache_dtype"),
    ],
)
def test_extra_args_may_not_set_what_an_option_owns(extra, message):
    with pytest.raises(FlagError, match=message):
        build_vllm_args({"extra_args": extra}, (0, 8, 5))


def test_kv_cache_dtype_is_a_typed_option():
    args = build_vllm_args({"block_size": 32, "kv_cache_dtype": "fp8"}, (0, 8, 5))["args"]
    assert args == ["--block-size", "32", "--kv-cache-dtype", "fp8"]
    assert build_vllm_args({"kv_cache_dtype": None}, (0, 8, 5))["args"] == []


def test_extra_args_removed_flags_are_dropped_with_their_values():
    extra = [
        "--enforce-eager",
        "--tokenizer-pool-type",
        "ray",
        "--max-num-seqs",
        "64",
        "--rope-theta=1e6",
    ]
    built = build_vllm_args({"extra_args": extra}, (0, 20, 1))
    assert built["args"] == ["--enforce-eager", "--max-num-seqs", "64"]
    assert [item["flag"] for item in built["dropped"]] == ["--tokenizer-pool-type", "--rope-theta"]
    # The same arguments pass untouched where the flags exist.
    assert build_vllm_args({"extra_args": extra}, (0, 8, 5))["args"] == extra


def test_extra_args_added_flag_before_its_release():
    built = build_vllm_args({"extra_args": ["--kv-cache-memory", "4000000000"]}, (0, 8, 5))
    assert built["args"] == []
    assert "needs vLLM 0.10.2 or later" in built["dropped"][0]["reason"]
    assert flag_supported("--kv-cache-memory", (0, 10, 2))


def test_negative_values_stay_with_their_flag():
    assert split_extra_args(["--foo", "-1", "--bar"]) == [["--foo", "-1"], ["--bar"]]


def test_api_key_and_port():
    args = build_vllm_args({"api_key": "s3cret", "container_port": 8001}, (0, 8, 5))["args"]
    assert args == ["--port", "8001", "--api-key", "s3cret"]
    assert mask_args(args) == ["--port", "8001", "--api-key", "********"]
    assert mask_args(["--api-key=s3cret"]) == ["--api-key=********"]
    assert build_vllm_args({"container_port": 8000}, (0, 8, 5))["args"] == []


@pytest.mark.parametrize(
    ("size", "version", "ok"),
    [
        (32, (0, 8, 5), True),
        (48, (0, 8, 5), False),
        (48, (0, 11, 2), False),
        (48, (0, 12, 0), True),
        (48, None, False),
        (0, (0, 20), False),
    ],
)
def test_block_size_per_version(size, version, ok):
    assert (check_block_size(size, version) is None) is ok


@pytest.mark.parametrize(
    ("image", "labels", "env", "expected"),
    [
        ("vllm/vllm-openai:v0.8.5", {}, {}, ("0.8.5", "image tag")),
        ("vllm/vllm-openai:latest", {}, {}, (None, None)),
        ("registry:5000/vllm/vllm-openai:v0.9.0", {}, {}, ("0.9.0", "image tag")),
        ("vllm/vllm-openai@sha256:abc", {}, {}, (None, None)),
        (
            "x:latest",
            {},
            {"VLLM_VERSION": "0.10.1.1"},
            ("0.10.1.1", "image environment VLLM_VERSION"),
        ),
        # Ubuntu's own OCI label must not be taken for vLLM's version.
        (
            "x:latest",
            {
                "org.opencontainers.image.version": "22.04",
                "org.opencontainers.image.ref.name": "ubuntu",
            },
            {},
            (None, None),
        ),
        (
            "x:latest",
            {
                "org.opencontainers.image.version": "0.8.5",
                "org.opencontainers.image.title": "vllm-openai",
            },
            {},
            ("0.8.5", "label org.opencontainers.image.version"),
        ),
        ("x:v0.1.0", {"vllm.version": "v0.11.0"}, {}, ("0.11.0", "label vllm.version")),
    ],
)
def test_detect_vllm_version(image, labels, env, expected):
    assert detect_vllm_version(image, labels, env) == expected


@pytest.mark.parametrize(
    ("entrypoint", "style"),
    [
        (["python3", "-m", "vllm.entrypoints.openai.api_server"], "api_server"),
        (["vllm", "serve"], "serve"),
        (["/usr/local/bin/vllm", "serve"], "serve"),
        (None, "api_server"),
    ],
)
def test_entrypoint_style(entrypoint, style):
    assert entrypoint_style(entrypoint) == style


def test_parse_cuda_requirement_of_the_12_4_base_image():
    alternatives = parse_cuda_requirement(REQUIRE_12_4)
    assert alternatives[0] == [("cuda", ">=", "12.4")]
    assert alternatives[1] == [
        ("brand", "=", "tesla"),
        ("driver", ">=", "470"),
        ("driver", "<", "471"),
    ]
    assert cuda_floor(REQUIRE_12_4) == "12.4"
    assert cuda_floor(REQUIRE_12_8) == "12.8"
    with pytest.raises(ValueError, match="malformed"):
        parse_cuda_requirement("cuda>=12.4 brand")


@pytest.mark.parametrize(
    "case",
    [
        # The seed host (driver 550.144.03, CUDA 12.4) and the v0.8.5 image.
        (REQUIRE_12_4, "12.4", "550.144.03", None, True, "meets"),
        # v0.9.0 (CUDA 12.8) on the seed host: refused, naming both versions.
        (REQUIRE_12_8, "12.4", "550.144.03", None, False, "needs CUDA 12.8"),
        (REQUIRE_12_8, "12.4", "550.144.03", "geforce", False, "geforce is not among"),
        # A data-centre card on the 550 branch runs 12.8 through forward compatibility.
        (REQUIRE_12_8, "12.4", "550.144.03", "tesla", True, "forward"),
        (REQUIRE_12_8, "12.8", "570.124.06", None, True, "meets"),
        (REQUIRE_12_8, "12.4", None, None, False, "set host_driver_version"),
        (REQUIRE_12_8, None, None, None, None, "unknown"),
        # A 535 driver (CUDA 12.2) on the 12.4 image: the 12.4 list has no 535 exception for
        # geforce? It has: brand=geforce,driver>=535 (the 12.4 base image lists GeForce).
        (REQUIRE_12_4, "12.2", "535.183.01", "geforce", True, "forward"),
    ],
)
def test_evaluate_cuda_requirement(case):
    require, cuda, driver, brand, satisfied, words = case
    result = evaluate_cuda_requirement({"NVIDIA_REQUIRE_CUDA": require}, cuda, driver, brand)
    assert result["satisfied"] is satisfied
    assert words in result["reason"]
    if satisfied is False:
        assert cuda in result["reason"]
        assert "12.8" in result["reason"]


def test_cuda_requirement_disabled_or_absent():
    assert evaluate_cuda_requirement(
        {"NVIDIA_REQUIRE_CUDA": REQUIRE_12_8, "NVIDIA_DISABLE_REQUIRE": "true"}, "12.4"
    )["satisfied"]
    assert evaluate_cuda_requirement({}, "12.4")["satisfied"]
    # Old images without NVIDIA_REQUIRE_CUDA: CUDA_VERSION is the floor.
    old = evaluate_cuda_requirement({"CUDA_VERSION": "12.8.1"}, "12.4", "550.144.03")
    assert old["satisfied"] is False
    assert old["floor"] == "12.8"


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("0.8.5\n", "0.8.5"),
        (b"0.32.0+cpu\n", "0.32.0+cpu"),
        ("WARNING: something on stderr\n0.10.1.1\n", "0.10.1.1"),
        ("", None),
        (None, None),
        ("Traceback (most recent call last):\n", None),
    ],
)
def test_parse_package_version(output, version):
    assert parse_package_version(output) == version


def test_package_version_command_reads_the_distribution_without_importing_vllm():
    argv = package_version_command()
    assert argv[:2] == ["python3", "-c"]
    assert "importlib.metadata" in argv[2]
    assert "import vllm" not in argv[2]
    compile(argv[2], "<package_version>", "exec")
