"""Every rule on the collection's role variables that needs no host, in one place.

Private to llmops.gpu_serving; no stability promise outside this collection.

playbooks/validate.yml (through the validate_inputs action) runs these rules on the controller
before any play connects to a host, so a bad value stops site.yml before the driver play has
changed anything. The roles' ``meta/argument_specs.yml`` give the types and choices; the rules
below add what a spec cannot say: ranges, formats and rules across variables.

Values are converted the way Ansible's argument spec converts them (``-e port=8080`` and INI
inventories give strings), and every message names the variable, the value and what is
accepted, in one line.

Pure functions on plain data, standard library only (plus the daemon.json rules of
docker_daemon_json, the same ones the module applies before it writes).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.docker_daemon_json import (
    daemon_config_problems,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_sync_run import (
    base_dir_problem,
)

ROLES = (
    "nvidia_driver",
    "cuda_toolkit",
    "docker_engine",
    "nvidia_container_toolkit",
    "model_sync",
    "vllm_server",
)

# Variables of the collection's playbooks rather than of a role.
PLAYBOOK_VARIABLES = {"vllm_upgrade_batch", "vllm_upgrade_benchmark_gate"}

_TRUE = {"yes", "on", "1", "true", "y", "t"}
_FALSE = {"no", "off", "0", "false", "n", "f"}

_HIDDEN = "<hidden>"
_MAX_SHOWN = 60

NCT_CVE_FLOOR = (1, 17, 8, 1)

# Flags the role builds from typed variables: vllm_server_extra_args must not pass them again.
VLLM_TYPED_FLAGS = {
    "--model": "vllm_server_model_container_path",
    "--served-model-name": "vllm_server_served_model_name",
    "--port": "vllm_server_port",
    "--host": "vllm_server_bind_address",
    "--api-key": "vllm_server_api_key",
    "--tensor-parallel-size": "vllm_server_tensor_parallel_size",
    "-tp": "vllm_server_tensor_parallel_size",
    "--dtype": "vllm_server_dtype",
    "--max-model-len": "vllm_server_max_model_len",
    "--max-num-batched-tokens": "vllm_server_max_num_batched_tokens",
    "--gpu-memory-utilization": "vllm_server_gpu_memory_utilization",
    "--block-size": "vllm_server_block_size",
    "--kv-cache-dtype": "vllm_server_kv_cache_dtype",
    "--enable-chunked-prefill": "vllm_server_enable_chunked_prefill",
    "--swap-space": "vllm_server_swap_space",
    "--tokenizer-pool-size": "vllm_server_tokenizer_pool_size",
    "--disable-custom-all-reduce": "vllm_server_disable_custom_all_reduce",
    "--rope-scaling": "vllm_server_rope_scaling",
}


class Problem(ValueError):
    """One value that is not accepted: ``accepted`` says what would be."""

    def __init__(self, accepted: str, note: str = ""):
        super().__init__(accepted)
        self.accepted = accepted
        self.note = note


def show(value: Any, secret: bool = False) -> str:
    """The value as the message quotes it: short, secrets hidden."""
    if secret and value not in ("", None):
        return _HIDDEN
    if value is None:
        return "null (nothing)"
    text = repr(value) if isinstance(value, str) else _plain(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


# --- conversion, as the argument spec does it -------------------------------------------------


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise Problem("an integer", "a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise Problem("an integer")


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise Problem("a number", "a boolean is not a number")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise Problem("a number") from None
    else:
        raise Problem("a number")
    if not math.isfinite(number):
        raise Problem("a finite number")
    return number


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Problem("a boolean (true/false, yes/no)")


def to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise Problem("a string", "YAML read an unquoted yes/no/true/false as a boolean: quote it")
    if isinstance(value, float):
        raise Problem("a string", "YAML read it as a number and may have dropped digits: quote it")
    if isinstance(value, int):
        return str(value)
    raise Problem("a string")


def to_list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")] if value.strip() else []
    raise Problem("a list")


def to_dict(value: Any) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and not value.strip():
        return {}
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            raise Problem("a mapping (or its JSON text)") from None
        if isinstance(parsed, dict):
            return parsed
    raise Problem("a mapping")


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": to_int,
    "float": to_float,
    "bool": to_bool,
    "str": to_str,
    "path": to_str,
    "raw": lambda value: value,
    "list": to_list,
    "dict": to_dict,
}


def convert(spec: Mapping[str, Any], value: Any) -> Any:
    """Convert ``value`` to the spec's type (elements and suboptions included) or raise Problem."""
    kind = spec.get("type", "str")
    if value is None:
        raise Problem(_type_words(spec), "write '' for an empty value")
    converted = CONVERTERS.get(kind, CONVERTERS["raw"])(value)
    if kind == "list" and spec.get("elements"):
        items = []
        for index, item in enumerate(converted):
            if spec["elements"] == "dict" and spec.get("options"):
                items.append(_convert_suboptions(spec["options"], item, f"[{index}]"))
            else:
                try:
                    items.append(convert({"type": spec["elements"]}, item))
                except Problem:
                    raise Problem(
                        "a list of " + _PLURAL.get(spec["elements"], "values"),
                        f"item {index} is {show(item)}",
                    ) from None
        converted = items
    elif kind == "dict" and spec.get("options"):
        converted = _convert_suboptions(spec["options"], converted, "")
    choices = spec.get("choices")
    if choices is not None and converted not in choices:
        raise Problem("one of: " + ", ".join(str(choice) for choice in choices))
    return converted


class SubProblem(Problem):
    def __init__(self, where: str, accepted: str, value: Any, note: str = ""):
        super().__init__(accepted, note)
        self.where = where
        self.value = value


def _convert_suboptions(options: Mapping[str, Any], value: Any, where: str) -> dict:
    if not isinstance(value, Mapping):
        raise SubProblem(where, "a mapping", value)
    unknown = sorted(set(value) - set(options))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(options), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SubProblem(
            f"{where}.{key}", "one of the keys " + ", ".join(options) + hint, value[key]
        )
    result = {}
    for key, option in options.items():
        if key not in value or value[key] is None:
            if option.get("required"):
                raise SubProblem(f"{where}.{key}", f"set ({_type_words(option)}, required)", None)
            continue
        try:
            result[key] = convert(option, value[key])
        except SubProblem as problem:
            raise SubProblem(
                f"{where}.{key}{problem.where}", problem.accepted, problem.value
            ) from None
        except Problem as problem:
            raise SubProblem(f"{where}.{key}", problem.accepted, value[key], problem.note) from None
    return result


_PLURAL = {
    "int": "integers",
    "float": "numbers",
    "bool": "booleans",
    "str": "strings",
    "path": "paths",
    "list": "lists",
    "dict": "mappings",
}


def _type_words(spec: Mapping[str, Any]) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "bool": "a boolean",
        "str": "a string",
        "path": "a path",
        "list": "a list",
        "dict": "a mapping",
    }.get(spec.get("type", "str"), "a value")


# --- format checks ----------------------------------------------------------------------------

_FINGERPRINT = re.compile(r"^[0-9A-Fa-f]{40}$")
_SHA256 = re.compile(r"^[0-9A-Fa-f]{64}$")
# Every Linux driver of the branches CUDA 12 supports is major.minor.patch (550.144.03).
_DRIVER_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\$?$")
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_SHM_SIZE = re.compile(r"^\d+[bkmgBKMG]?$")
_URL = re.compile(r"^(https?|file)://[^\s]+$")


def _hf_revision_ok(revision: str) -> bool:
    # git check-ref-format's rules, as the Hub applies them to branches and tags.
    if revision == "":
        return True
    if re.search(r"[\s~^:?*\[\\]|\.\.|@\{|//", revision) or revision.endswith((".", "/", ".lock")):
        return False
    return not revision.startswith(("/", "-"))


def source_problem(source: str) -> str | None:  # noqa: PLR0911
    """Why a model_sync source is refused, or None."""
    if source.startswith("hf://"):
        repo, _, revision = source[len("hf://") :].partition("@")
        if not _HF_REPO.match(repo):
            return "hf://<org>/<name>[@revision]"
        if not _hf_revision_ok(revision):
            return "hf://<org>/<name>[@revision] with a valid branch, tag or commit"
        return None
    if source.startswith("rsync://"):
        return (
            None if re.match(r"^rsync://[^/\s]+/\S+", source) else "rsync://<host>/<module>/<path>"
        )
    if source.startswith(("https://", "http://")):
        return None if re.match(r"^https?://[^/\s]+/?\S*$", source) else "https://<mirror>/<path>"
    if source.startswith("/"):
        return None
    if re.match(r"^[A-Za-z0-9_.@-]+:/(?!/)\S*$", source):
        return None
    return "an absolute path, hf://<org>/<name>, rsync://..., host:/path or https://..."


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.split(r"[.-]", text))


def _inside(path: str, base: str) -> bool:
    path, base = posixpath.normpath(path), posixpath.normpath(base)
    return path == base or path.startswith(base.rstrip("/") + "/")


# --- the rules --------------------------------------------------------------------------------


class Report:
    """Violations (each one line) and warnings found in one set of variables."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.failed: set[str] = set()

    def error(self, name: str, value: Any, accepted: str, note: str = "", secret: bool = False):
        if name in self.failed:
            return
        self.failed.add(name.split("[", maxsplit=1)[0].split(".", maxsplit=1)[0])
        line = f"{name} must be {accepted}; got {show(value, secret)}"
        self.errors.append(line + (f" ({note})" if note else ""))


def check_inputs(
    specs: Mapping[str, Mapping[str, Any]],
    provided: Mapping[str, Any],
    all_names: list[str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    host: str | None = None,
) -> Report:
    """Check ``provided`` (variable -> value, as the play sees them) against the roles' specs.

    ``specs`` maps a role to its argument spec options; variables not in ``provided`` take the
    spec's default. ``all_names`` are the names of every variable the play defines, for the
    did-you-mean warnings. ``groups`` (the inventory's, as the play's ``groups``) and ``host``
    check that a serving cluster's group exists and holds this host.
    """
    report = Report()
    options: dict[str, Mapping[str, Any]] = {}
    for role_options in specs.values():
        options.update(role_options)
    values: dict[str, Any] = {}
    for name, spec in options.items():
        if "default" in spec:
            values[name] = spec["default"]
    for name, value in provided.items():
        spec = options.get(name)
        if spec is None:
            continue
        if value is None and spec.get("default") is None:
            # An option without a default (a benchmark threshold): null leaves it unset.
            continue
        secret = bool(spec.get("no_log"))
        try:
            values[name] = convert(spec, value)
        except SubProblem as problem:
            report.error(
                name + problem.where, problem.value, problem.accepted, problem.note, secret
            )
        except Problem as problem:
            report.error(name, value, problem.accepted, problem.note, secret)
    _apply_rules(report, values)
    if groups is not None:
        _cluster_group_rule(report, values, groups, host)
    _batch_rule(report, provided)
    _gate_rule(report, provided)
    for name in all_names or []:
        warning = _near_miss(name, options)
        if warning:
            report.warnings.append(warning)
    return report


def _near_miss(name: str, options: Mapping[str, Any]) -> str | None:
    if name in options or name in PLAYBOOK_VARIABLES or name.startswith("_"):
        return None
    if name.startswith(("ansible_", "vault_")) or any(known in name for known in options):
        return None
    close = difflib.get_close_matches(
        name, list(options) + sorted(PLAYBOOK_VARIABLES), n=1, cutoff=0.85
    )
    if close:
        return f"{name} is not a variable of this collection; did you mean {close[0]}?"
    role = next((role for role in ROLES if name.startswith(role + "_")), None)
    if role:
        return f"{name} is not a variable of the {role} role (its README lists them); it is ignored"
    return None


def _batch_rule(report: Report, provided: Mapping[str, Any]) -> None:
    if "vllm_upgrade_batch" not in provided:
        return
    value = provided["vllm_upgrade_batch"]
    accepted = "a number of hosts >= 1 or a percentage such as '25%'"
    if isinstance(value, str) and re.fullmatch(r"\s*([1-9]\d?|100)%\s*", value):
        return
    try:
        if to_int(value) >= 1:
            return
    except Problem:
        pass
    report.error("vllm_upgrade_batch", value, accepted, "it sets the play's serial")


def _gate_rule(report: Report, provided: Mapping[str, Any]) -> None:
    if "vllm_upgrade_benchmark_gate" not in provided:
        return
    value = provided["vllm_upgrade_benchmark_gate"]
    try:
        to_bool(value)
    except Problem as problem:
        report.error(
            "vllm_upgrade_benchmark_gate",
            value,
            problem.accepted,
            "it sets vllm_server_benchmark_gate",
        )


def _apply_rules(report: Report, v: dict[str, Any]) -> None:
    def bad(name: str, accepted: str, note: str = "", value: Any = None) -> None:
        report.error(name, v.get(name) if value is None else value, accepted, note)

    def ok(name: str) -> bool:
        return name in v and name.split("[", maxsplit=1)[0] not in report.failed

    def at_least(name: str, low: float, words: str | None = None) -> None:
        if ok(name) and v[name] < low:
            bad(name, words or f">= {low:g}")

    def port(name: str) -> None:
        if ok(name) and not 1 <= v[name] <= 65535:
            bad(name, "a TCP port 1-65535")

    def absolute(name: str, empty_ok: bool = False) -> None:
        if ok(name) and not (v[name] == "" and empty_ok) and not str(v[name]).startswith("/"):
            bad(name, "an absolute path" + (" (or empty)" if empty_ok else ""))

    def matches(name: str, pattern: re.Pattern, accepted: str, empty_ok: bool = False) -> None:
        if ok(name) and not (v[name] == "" and empty_ok) and not pattern.match(str(v[name])):
            bad(name, accepted + (" (or empty)" if empty_ok else ""))

    def url(name: str, empty_ok: bool = False) -> None:
        matches(name, _URL, "an http://, https:// or file:// URL", empty_ok)

    def packages(name: str) -> None:
        if ok(name):
            for item in v[name]:
                if not _PACKAGE.match(item):
                    report.error(name, item, "bare package names (the role adds the version)")
                    return

    def fingerprint(name: str, empty_ok: bool = False) -> None:
        words = "the key's full 40-digit hex fingerprint"
        matches_key = _FINGERPRINT.match(str(v.get(name, "")).replace(" ", ""))
        if ok(name) and not (v[name] == "" and empty_ok) and not matches_key:
            bad(name, words + (" (or empty)" if empty_ok else ""))

    # nvidia_driver
    matches("nvidia_driver_branch", re.compile(r"^\d+$"), "a driver branch number such as '550'")
    if ok("nvidia_driver_version"):
        version = v["nvidia_driver_version"]
        if not _DRIVER_VERSION.match(version):
            bad("nvidia_driver_version", "a driver version x.y.z such as '550.144.03'")
        elif ok("nvidia_driver_branch") and version.split(".")[0] != v["nvidia_driver_branch"]:
            bad(
                "nvidia_driver_version",
                f"a version of branch {v['nvidia_driver_branch']} (nvidia_driver_branch)",
            )
    url("nvidia_driver_repo_base_url")
    url("nvidia_driver_repo_key_url", empty_ok=True)
    # Empty: NVIDIA's key for the repository directory (roles/nvidia_driver/vars/main.yml).
    fingerprint("nvidia_driver_repo_key_fingerprint", empty_ok=True)
    matches("nvidia_driver_local_repo_sha256", _SHA256, "a 64-digit SHA-256", empty_ok=True)
    packages("nvidia_driver_packages")
    at_least("nvidia_driver_reboot_timeout", 1, "a number of seconds >= 1")
    at_least("nvidia_driver_expected_gpus", 0, "a GPU count >= 0 (0: any)")
    if v.get("nvidia_driver_state") == "present" and v.get("nvidia_driver_source") == "local_repo":
        for name, words in (
            ("nvidia_driver_local_repo_deb", "set with nvidia_driver_source=local_repo"),
            ("nvidia_driver_local_repo_sha256", "set with nvidia_driver_source=local_repo"),
        ):
            if ok(name) and v[name] == "":
                bad(name, words + " (the package URL or path and its SHA-256)")
    if v.get("nvidia_driver_state") == "present" and v.get("nvidia_driver_mok_signing") is True:
        absolute("nvidia_driver_mok_key")
        absolute("nvidia_driver_mok_cert")

    # cuda_toolkit
    matches("cuda_toolkit_version", re.compile(r"^\d+\.\d+$"), "major.minor such as '12.4'")
    if ok("cuda_toolkit_release"):
        release = v["cuda_toolkit_release"]
        if not re.match(r"^\d+\.\d+\.\d+$", release):
            bad("cuda_toolkit_release", "a release x.y.z such as '12.4.1'")
        elif ok("cuda_toolkit_version") and not release.startswith(v["cuda_toolkit_version"] + "."):
            bad(
                "cuda_toolkit_release",
                f"a release of cuda_toolkit_version {v['cuda_toolkit_version']}",
            )
    url("cuda_toolkit_repo_base_url")
    url("cuda_toolkit_repo_key_url", empty_ok=True)
    url("cuda_toolkit_runfile_url")
    fingerprint("cuda_toolkit_repo_key_fingerprint")
    matches("cuda_toolkit_runfile_sha256", _SHA256, "a 64-digit SHA-256", empty_ok=True)
    absolute("cuda_toolkit_runfile_tmpdir")
    absolute("cuda_toolkit_install_prefix")
    at_least("cuda_toolkit_runfile_tmpdir_free_mib", 0, "MiB >= 0 (0 skips the check)")
    at_least("cuda_toolkit_runfile_prefix_free_mib", 0, "MiB >= 0 (0 skips the check)")
    if (
        v.get("cuda_toolkit_method") == "repo"
        and ok("cuda_toolkit_install_prefix")
        and posixpath.normpath(v["cuda_toolkit_install_prefix"]) != "/usr/local"
    ):
        bad(
            "cuda_toolkit_install_prefix",
            "/usr/local with cuda_toolkit_method=repo (the packages install there)",
        )

    # docker_engine
    matches(
        "docker_engine_version",
        re.compile(r"^(\d+\.\d+\.\d+|\d+:[0-9A-Za-z.+~-]+)$"),
        "an upstream version x.y.z such as '27.5.1' or a full apt version with its epoch",
    )
    url("docker_engine_repo_base_url")
    url("docker_engine_repo_key_url", empty_ok=True)
    fingerprint("docker_engine_repo_key_fingerprint")
    # The role's own assert (tasks/main.yml) takes these forms.
    matches(
        "docker_engine_containerd_version",
        re.compile(r"^[0-9][A-Za-z0-9.+~]*-[A-Za-z0-9.+~]+$"),
        "a version with its packaging revision such as '1.7.25-1'",
        empty_ok=True,
    )
    for name, example in (
        ("docker_engine_compose_plugin_version", "2.32.4"),
        ("docker_engine_buildx_plugin_version", "0.20.0"),
    ):
        matches(name, re.compile(r"^[0-9][A-Za-z0-9.+~:-]*$"), f"a version such as '{example}'")
    packages("docker_engine_packages")
    packages("docker_engine_distro_packages")
    packages("docker_engine_conflicting_packages")
    absolute("docker_engine_daemon_json_path")
    if ok("docker_engine_daemon_options"):
        problems = daemon_config_problems(v["docker_engine_daemon_options"])
        if problems:
            key, accepted = problems[0]
            report.error(
                f"docker_engine_daemon_options.{key}",
                _lookup(v["docker_engine_daemon_options"], key),
                accepted,
            )
    if ok("docker_engine_users"):
        for user in v["docker_engine_users"]:
            if not _USER.match(user):
                report.error("docker_engine_users", user, "a list of user names")
                break

    # nvidia_container_toolkit
    name = "nvidia_container_toolkit_version"
    if ok(name):
        if not re.match(r"^\d+\.\d+\.\d+(-\d+)?$", v[name]):
            bad(name, "a version such as '1.17.8-1'")
        elif _version_tuple(
            v[name] + ("" if "-" in v[name] else "-0")
        ) < NCT_CVE_FLOOR and not v.get("nvidia_container_toolkit_allow_vulnerable_version"):
            bad(
                name,
                "1.17.8-1 or newer",
                "older versions have CVE-2025-23266; "
                "nvidia_container_toolkit_allow_vulnerable_version overrides",
            )
    url("nvidia_container_toolkit_repo_url")
    url("nvidia_container_toolkit_repo_key_url")
    fingerprint("nvidia_container_toolkit_repo_key_fingerprint")
    packages("nvidia_container_toolkit_packages")
    matches(
        "nvidia_container_toolkit_runtime_name",
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
        "a runtime name such as nvidia",
    )
    matches(
        "nvidia_container_toolkit_runtime_path",
        re.compile(r"^(/\S*|[A-Za-z0-9][A-Za-z0-9_.+-]*)$"),
        "an absolute path or a command name such as nvidia-container-runtime",
    )
    absolute("nvidia_container_toolkit_daemon_json_path")
    matches(
        "nvidia_container_toolkit_expected_driver_version",
        _DRIVER_VERSION,
        "a driver version x.y.z such as '550.144.03'",
        empty_ok=True,
    )

    # model_sync
    matches("model_sync_user", _USER, "a user name")
    matches("model_sync_group", _USER, "a group name")
    absolute("model_sync_base_dir")
    if ok("model_sync_base_dir") and v["model_sync_base_dir"].startswith("/"):
        problem = base_dir_problem(v["model_sync_base_dir"])
        if problem:
            bad("model_sync_base_dir", problem)
    absolute("model_sync_venv")
    port("model_sync_fanout_port")
    at_least("model_sync_download_throttle", 1, "a number of hosts >= 1")
    at_least("model_sync_min_free_gib", 0, "GiB >= 0")
    at_least("model_sync_timeout", 1, "a number of seconds >= 1")
    at_least("model_sync_progress_interval", 1, "a number of seconds >= 1")
    at_least("model_sync_workers", 0, "a worker count >= 0 (0: one per CPU)")
    url("model_sync_hf_endpoint", empty_ok=True)
    url("model_sync_pip_index_url", empty_ok=True)
    matches(
        "model_sync_huggingface_hub_version",
        re.compile(r"^\d+(\.\d+)*$"),
        "a version such as '2.4.0'",
    )
    if (
        ok("model_sync_fanout_address")
        and v["model_sync_fanout_address"] != ""
        and not _is_ip(v["model_sync_fanout_address"])
        and not re.match(r"^[A-Za-z0-9.-]+$", v["model_sync_fanout_address"])
    ):
        bad("model_sync_fanout_address", "an IP address or host name without a port (or empty)")
    if ok("model_sync_models"):
        _model_rules(report, v["model_sync_models"], v.get("model_sync_base_dir", "/"))

    # vllm_server
    port("vllm_server_port")
    for name in (
        "vllm_server_tensor_parallel_size",
        "vllm_server_max_model_len",
        "vllm_server_max_num_batched_tokens",
    ):
        at_least(name, 1, "an integer >= 1")
    for name in ("vllm_server_ready_timeout", "vllm_server_verify_timeout"):
        at_least(name, 1, "a number of seconds >= 1")
    at_least("vllm_server_drain_timeout", 0, "a number of seconds >= 0 (0: no drain)")
    at_least("vllm_server_swap_space", 0, "GiB >= 0")
    at_least("vllm_server_tokenizer_pool_size", 0, "an integer >= 0 (0: no pool)")
    at_least("vllm_server_min_concurrency", 0, "a number >= 0")
    at_least("vllm_server_gpu_reserved_gib", 0, "GiB >= 0")
    at_least("vllm_server_kv_cache_gib", 0, "GiB >= 0 (0: predicted from GPU memory)")
    if ok("vllm_server_gpu_memory_gib") and not 0 <= v["vllm_server_gpu_memory_gib"] <= 4096:
        bad("vllm_server_gpu_memory_gib", "GiB of one GPU, 0 (from nvidia-smi) to 4096")
    if ok("vllm_server_gpu_reserved_gib") and v["vllm_server_gpu_reserved_gib"] > 64:
        bad("vllm_server_gpu_reserved_gib", "GiB 0-64")
    for name in (
        "vllm_server_gpu_memory_utilization",
        "vllm_server_autotune_max_gpu_memory_utilization",
    ):
        if ok(name) and not 0 < v[name] <= 1:
            bad(name, "a share greater than 0 and at most 1")
    if (
        v.get("vllm_server_autotune") is True
        and ok("vllm_server_gpu_memory_utilization")
        and ok("vllm_server_autotune_max_gpu_memory_utilization")
        and v["vllm_server_autotune_max_gpu_memory_utilization"]
        < v["vllm_server_gpu_memory_utilization"]
    ):
        bad(
            "vllm_server_autotune_max_gpu_memory_utilization",
            ">= vllm_server_gpu_memory_utilization "
            f"({v['vllm_server_gpu_memory_utilization']:g}) with autotune",
        )
    if (
        ok("vllm_server_tensor_parallel_size")
        and ok("nvidia_driver_expected_gpus")
        # A serving cluster's TP spans its hosts: the role checks each host's share of the ranks.
        and not v.get("vllm_server_cluster_group")
        and v["nvidia_driver_expected_gpus"] > 0
        and v["vllm_server_tensor_parallel_size"] > v["nvidia_driver_expected_gpus"]
    ):
        bad(
            "vllm_server_tensor_parallel_size",
            f"at most nvidia_driver_expected_gpus ({v['nvidia_driver_expected_gpus']})",
        )
    if (
        ok("vllm_server_bind_address")
        and v["vllm_server_bind_address"] != ""
        and not _is_ip(v["vllm_server_bind_address"])
    ):
        bad(
            "vllm_server_bind_address", "an IP address without a port, such as 127.0.0.1 (or empty)"
        )
    if ok("vllm_server_api_key"):
        key = v["vllm_server_api_key"]
        if key != "" and (len(key) < 16 or re.search(r"\s", key)):
            report.error(
                "vllm_server_api_key",
                key,
                "at least 16 characters without whitespace (or empty)",
                f"{len(key)} characters",
                secret=True,
            )
    if ok("vllm_server_cpuset_cpus") and v["vllm_server_cpuset_cpus"] != "":
        cpuset = v["vllm_server_cpuset_cpus"]
        if not _CPUSET.match(cpuset) or any(
            int(a) > int(b) for a, _, b in (part.partition("-") for part in cpuset.split(",")) if b
        ):
            bad("vllm_server_cpuset_cpus", "a cpuset such as '0-55' or '0,2,4-7' (or empty)")
    if ok("vllm_server_served_model_name") and not v["vllm_server_served_model_name"].strip():
        bad("vllm_server_served_model_name", "a non-empty name")
    matches(
        "vllm_server_container_name",
        _CONTAINER_NAME,
        "a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
    )
    if ok("vllm_server_image") and (
        not v["vllm_server_image"] or re.search(r"\s", v["vllm_server_image"])
    ):
        bad("vllm_server_image", "an image reference such as vllm/vllm-openai:v0.8.5")
    matches(
        "vllm_server_vllm_version",
        re.compile(r"^\d+\.\d+(\.\d+)?\S*$"),
        "a vLLM version such as 0.8.5",
        empty_ok=True,
    )
    absolute("vllm_server_model_host_path")
    absolute("vllm_server_model_container_path")
    absolute("vllm_server_report_path")
    absolute("vllm_server_compile_cache_dir", empty_ok=True)
    matches("vllm_server_shm_size", _SHM_SIZE, "a size such as 16g", empty_ok=True)
    matches(
        "vllm_server_gpus",
        re.compile(r"^(all|\d+|device=\d+(,\d+)*|\"device=\d+(,\d+)*\")$"),
        "all, a count or device=0,1",
    )
    if ok("vllm_server_ulimits"):
        for limit, value in v["vllm_server_ulimits"].items():
            try:
                if to_int(value) < -1:
                    raise Problem("")
            except Problem:
                report.error(
                    f"vllm_server_ulimits.{limit}", value, "an integer >= -1 (-1: unlimited)"
                )
                break
    if ok("vllm_server_expect"):
        for key, value in v["vllm_server_expect"].items():
            if value < 0:
                report.error(f"vllm_server_expect.{key}", value, ">= 0")
                break
    if ok("vllm_server_rope_scaling") and v["vllm_server_rope_scaling"]:
        scaling = v["vllm_server_rope_scaling"]
        if not ("rope_type" in scaling or "type" in scaling):
            bad("vllm_server_rope_scaling", "a mapping with rope_type (and factor), or empty")
    _cluster_rules(report, v, ok, bad)
    at_least("nvidia_driver_apt_lock_timeout", 0, "a number of seconds >= 0")
    if ok("nvidia_driver_repo_retired_keys"):
        for key in v["nvidia_driver_repo_retired_keys"]:
            if not _KEY_ID.match(str(key).replace(" ", "")):
                report.error(
                    "nvidia_driver_repo_retired_keys", key, "key IDs of 8, 16 or 40 hex digits"
                )
                break
    if ok("nvidia_driver_kernel_headers_meta_package") and v[
        "nvidia_driver_kernel_headers_meta_package"
    ] not in ("", "auto"):
        matches(
            "nvidia_driver_kernel_headers_meta_package",
            _PACKAGE,
            "auto, empty (none) or a package name such as linux-headers-generic",
        )
    if ok("vllm_server_extra_args"):
        _extra_args_rule(report, v["vllm_server_extra_args"])
    if ok("vllm_server_env"):
        _env_rule(report, v["vllm_server_env"])

    # vllm_server's benchmark entry point (playbooks/benchmark.yml); unset thresholds are None.
    if ok("vllm_server_benchmark_concurrency"):
        levels = v["vllm_server_benchmark_concurrency"]
        if not levels or min(levels) < 1:
            bad("vllm_server_benchmark_concurrency", "a non-empty list of concurrency levels >= 1")
    for name in (
        "vllm_server_benchmark_num_prompts",
        "vllm_server_benchmark_input_len",
        "vllm_server_benchmark_output_len",
    ):
        at_least(name, 1, "an integer >= 1")
    at_least("vllm_server_benchmark_timeout", 1, "a number of seconds >= 1")
    for name, words in (
        ("vllm_server_benchmark_min_output_throughput", "tokens/s >= 0 (or unset)"),
        ("vllm_server_benchmark_max_p99_ttft_ms", "milliseconds >= 0 (or unset)"),
        ("vllm_server_benchmark_max_failed_requests", "a number of requests >= 0 (or unset)"),
    ):
        if ok(name) and v[name] is not None and v[name] < 0:
            bad(name, words)


def _env_rule(report: Report, env: Mapping[str, Any]) -> None:
    # The container gets each value as text (str() of it): a boolean would arrive as "True",
    # which vLLM's integer switches (VLLM_USE_V1=int(...)) refuse, and a mapping or list has no
    # text form a program reads.
    for key, value in env.items():
        where = f"vllm_server_env.{key}"
        if not _ENV_NAME.match(str(key)):
            report.error(where, key, "an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
            return
        if isinstance(value, bool):
            report.error(where, value, "a string or a number", "quote it, such as '1' or 'true'")
            return
        if not isinstance(value, (str, int, float)):
            report.error(where, value, "a string or a number")
            return


def _extra_args_rule(report: Report, extra_args: list[str]) -> None:
    for arg in extra_args:
        flag = arg.split("=", 1)[0].split()[0] if arg.strip() else arg
        if flag in VLLM_TYPED_FLAGS:
            report.error(
                "vllm_server_extra_args",
                arg,
                f"flags the role does not build; set {VLLM_TYPED_FLAGS[flag]} instead of {flag}",
            )
            return


def _model_rules(report: Report, models: list[dict], base_dir: str) -> None:  # noqa: PLR0911
    seen: dict[str, int] = {}
    for index, model in enumerate(models):
        where = f"model_sync_models[{index}]"
        name, source = model.get("name", ""), model.get("source", "")
        if not _MODEL_NAME.match(name):
            report.error(f"{where}.name", name, "<org>/<name> such as qwen/qwen3-30b-a3b")
            return
        problem = source_problem(source)
        if problem:
            report.error(f"{where}.source", source, problem)
            return
        if source.startswith("hf://") and "@" in source and model.get("revision"):
            report.error(
                f"{where}.revision", model["revision"], "empty when source names @revision"
            )
            return
        if not _hf_revision_ok(model.get("revision") or ""):
            report.error(f"{where}.revision", model["revision"], "a branch, tag or commit name")
            return
        dest = model.get("dest") or posixpath.join(base_dir, name)
        if model.get("dest") is not None:
            if not dest.startswith("/"):
                report.error(f"{where}.dest", dest, "an absolute path")
                return
            if not _inside(dest, base_dir) or posixpath.normpath(dest) == posixpath.normpath(
                base_dir
            ):
                report.error(
                    f"{where}.dest", dest, f"a directory inside model_sync_base_dir ({base_dir})"
                )
                return
        if source.startswith("/") and (_inside(dest, source) or _inside(source, dest)):
            report.error(
                f"{where}.dest", dest, f"a directory that does not overlap the source {source}"
            )
            return
        key = posixpath.normpath(dest)
        if key in seen:
            report.error(
                f"{where}.dest",
                dest,
                f"a destination no other model uses (model {seen[key]} has it)",
            )
            return
        seen[key] = index


_KEY_ID = re.compile(r"^(0x)?([0-9A-Fa-f]{8}|[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40})$")
# A Linux interface name (at most 15 characters), or the lists and prefixes NCCL_SOCKET_IFNAME
# takes: a comma list, ^ to exclude, = for exact names (NCCL's environment variable docs).
_IFNAME = re.compile(r"^[=^]?[A-Za-z0-9_.:-]{1,15}(,[A-Za-z0-9_.:-]{1,15})*$")
_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_NETWORK_MODE = re.compile(r"^(host|bridge|none|container:\S+|[A-Za-z0-9][A-Za-z0-9_.-]*)$")


def _cluster_rules(report: Report, v: Mapping[str, Any], ok: Any, bad: Any) -> None:
    """The serving cluster's variables (vllm_server_cluster_*, vllm_server_network_mode)."""
    if ok("vllm_server_cluster_master_port") and not (
        1 <= v["vllm_server_cluster_master_port"] <= 65535
    ):
        bad("vllm_server_cluster_master_port", "a TCP port 1-65535")
    if ok("vllm_server_cluster_pipeline_parallel_size") and (
        v["vllm_server_cluster_pipeline_parallel_size"] < 1
    ):
        bad("vllm_server_cluster_pipeline_parallel_size", "an integer >= 1")
    if ok("vllm_server_cluster_join_settle") and v["vllm_server_cluster_join_settle"] < 0:
        bad("vllm_server_cluster_join_settle", "a number of seconds >= 0")
    for name in ("vllm_server_cluster_master_addr", "vllm_server_cluster_host_ip"):
        if ok(name) and v[name] != "" and not (_is_ip(v[name]) or _HOST.match(v[name])):
            bad(name, "an IP address or host name, without a port (or empty)")
    if (
        ok("vllm_server_cluster_socket_ifname")
        and v["vllm_server_cluster_socket_ifname"] != ""
        and not _IFNAME.match(v["vllm_server_cluster_socket_ifname"])
    ):
        bad(
            "vllm_server_cluster_socket_ifname",
            "an interface name such as eth0 or ens5 (or a comma list; or empty)",
        )
    if (
        ok("vllm_server_network_mode")
        and v["vllm_server_network_mode"] != ""
        and not _NETWORK_MODE.match(v["vllm_server_network_mode"])
    ):
        bad("vllm_server_network_mode", "host, bridge, none or a Docker network name (or empty)")
    if (
        v.get("vllm_server_cluster_group")
        and v.get("vllm_server_cluster_backend") == "ray"
        and ok("vllm_server_cluster_host_ip")
        and v["vllm_server_cluster_host_ip"] == ""
    ):
        bad(
            "vllm_server_cluster_host_ip",
            "this host's address (VLLM_HOST_IP), set per host with vllm_server_cluster_backend=ray",
        )
    if v.get("vllm_server_cluster_head") and not v.get("vllm_server_cluster_group"):
        bad(
            "vllm_server_cluster_head",
            "empty unless vllm_server_cluster_group names the cluster's inventory group",
        )


def _cluster_group_rule(
    report: Report, v: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str | None
) -> None:
    name = v.get("vllm_server_cluster_group")
    if not name or "vllm_server_cluster_group" in report.failed:
        return
    members = list(groups.get(name) or [])
    if len(members) < 2 or (host is not None and host not in members):
        where = f"{len(members)} host(s)" if name in groups else "no such group"
        report.error(
            "vllm_server_cluster_group",
            name,
            "an inventory group of two or more hosts that holds this host",
            where,
        )
        return
    head = v.get("vllm_server_cluster_head")
    if head and head not in members:
        report.error("vllm_server_cluster_head", head, f"a host of group {name}", "not in it")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return None
    return value


def format_failure(host: str, report: Report) -> str:
    """The task's message: one line per violation under a short header."""
    count = len(report.errors)
    header = (
        f"{count} invalid variable{'s' if count != 1 else ''} for {host} (nothing was changed):"
    )
    return "\n".join([header] + [f"- {line}" for line in report.errors])
