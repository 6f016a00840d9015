"""Docker's daemon.json as merged JSON: parse, merge, render, compare.

Private to llmops.gpu_serving; no stability promise outside this collection.

Two roles write the same file: docker_engine owns keys such as ``log-driver`` and ``log-opts``,
nvidia_container_toolkit owns ``runtimes.nvidia`` (and optionally ``default-runtime`` and
``features.cdi``). Each must keep every key it does not own, and report a change only when the
meaning of the file changes: a needless Docker restart costs running containers their GPUs.
So nothing here looks at key order or whitespace; equality is decided on the parsed JSON.

Pure functions on str/dict/list, standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# Runtimes dockerd knows without a ``runtimes`` entry; ``default-runtime`` may name these.
BUILTIN_RUNTIMES = frozenset({"runc", "io.containerd.runc.v2"})

# nvidia-ctk writes daemon.json with Go's json.MarshalIndent: 4 spaces, keys sorted. Rendering
# the same way means the two tools do not keep reformatting each other's output.
RENDER_INDENT = 4


class DaemonJsonError(ValueError):
    """daemon.json text that cannot be used, or a request that contradicts itself.

    ``line`` and ``column`` (1-based) are set when the JSON parser located the problem.
    """

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line = line
        self.column = column


class _DuplicateKeyError(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKeyError(key)
        obj[key] = value
    return obj


def _reject_non_json_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and dockerd) do not.
    raise ValueError(f"{name} is not valid JSON")


def _json_type_name(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def parse_daemon_json(text: str, source: str = "daemon.json") -> dict[str, Any]:
    """Parse daemon.json text into a dict.

    An empty or whitespace-only file means "no settings" and gives ``{}`` (dockerd treats it
    the same way as a missing file). Raises DaemonJsonError, naming ``source`` and the line and
    column, for invalid JSON, for a top level that is not an object, and for a key repeated in
    one object (which value was meant is a guess, and rewriting the file would drop the other).
    """
    if not text.strip():
        return {}
    try:
        loaded = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_non_json_constant,
        )
    except json.JSONDecodeError as err:
        raise DaemonJsonError(
            f"{source}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}",
            line=err.lineno,
            column=err.colno,
        ) from None
    except _DuplicateKeyError as err:
        raise DaemonJsonError(
            f"{source}: key {err.key!r} appears more than once in the same object; "
            "remove the duplicate so that the intended value is unambiguous"
        ) from None
    except ValueError as err:
        raise DaemonJsonError(f"{source}: {err}") from None
    if not isinstance(loaded, dict):
        raise DaemonJsonError(
            f"{source}: the top level must be a JSON object, found {_json_type_name(loaded)}"
        )
    return loaded


def _as_json_data(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A deep copy limited to what JSON can hold (string keys, lists, no NaN).

    Round-tripping through json both copies (inputs are never mutated) and normalises what YAML
    may hand over (integer keys, tuples), so that merging and comparing see what will be written.
    """
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise DaemonJsonError(f"{what} cannot be written as JSON: {err}") from None


def _canonical(value: Any) -> str:
    # Type-strict on purpose: true != 1 and 1 != 1.0 here, as they are for dockerd's Go decoder.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def render_daemon_json(config: Mapping[str, Any]) -> str:
    """daemon.json text for ``config``: 4-space indent, sorted keys, UTF-8 kept, final newline."""
    return (
        json.dumps(
            config, indent=RENDER_INDENT, sort_keys=True, ensure_ascii=False, allow_nan=False
        )
        + "\n"
    )


def configs_equal(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Whether two configs mean the same: key order and formatting ignored, list order kept."""
    return _canonical(first) == _canonical(second)


def _leaf_paths(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths.extend(_leaf_paths(value, f"{path}."))
        else:
            paths.append(path)
    return paths


def _paths_overlap(first: str, second: str) -> bool:
    return first == second or first.startswith(f"{second}.") or second.startswith(f"{first}.")


def _find_path(config: Mapping[str, Any], dotted: str) -> list[str] | None:
    """Segments of ``dotted`` as keys present in ``config``, or None when it is not there.

    Keys may contain dots themselves (runtime names such as ``io.containerd.runc.v2``), so
    the path is matched against the keys that exist: an exact key first, then the longest key
    that is a prefix of the path.
    """
    if dotted in config:
        return [dotted]
    prefixes = sorted(
        (key for key in config if dotted.startswith(f"{key}.")), key=len, reverse=True
    )
    for key in prefixes:
        child = config[key]
        if isinstance(child, dict):
            rest = _find_path(child, dotted[len(key) + 1 :])
            if rest is not None:
                return [key, *rest]
    return None


def _remove_path(config: dict[str, Any], dotted: str) -> None:
    segments = _find_path(config, dotted)
    if segments is None:
        return
    parents = [config]
    for key in segments[:-1]:
        parents.append(parents[-1][key])
    del parents[-1][segments[-1]]
    # An object emptied by the removal goes too: taking out the last runtime should not leave
    # "runtimes": {} behind (nvidia-ctk prunes the same way).
    for depth in range(len(segments) - 1, 0, -1):
        if parents[depth]:
            break
        del parents[depth - 1][segments[depth - 1]]


def _merge_into(target: dict[str, Any], overlay: Mapping[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def merge_daemon_config(
    current: Mapping[str, Any],
    desired: Mapping[str, Any],
    remove: Iterable[str] = (),
) -> dict[str, Any]:
    """The config after setting the keys in ``desired`` and deleting the paths in ``remove``.

    Objects are merged key by key at every depth (``runtimes`` keeps the other runtimes,
    ``log-opts`` keeps the other options); lists and scalars in ``desired`` replace what is
    there. ``remove`` holds dotted paths such as ``runtimes.nvidia`` or ``default-runtime``;
    a path that is not present is ignored. A path both set and removed is refused with
    DaemonJsonError. Returns a new dict; the inputs are not modified.
    """
    merged = _as_json_data(current, "the current config")
    wanted = _as_json_data(desired, "the desired config")
    remove_paths = [str(path) for path in remove]
    conflicts = sorted(
        {
            path
            for path in remove_paths
            for leaf in _leaf_paths(wanted)
            if _paths_overlap(path, leaf)
        }
    )
    if conflicts:
        raise DaemonJsonError("these paths are both set and removed: " + ", ".join(conflicts))
    _merge_into(merged, wanted)
    for path in remove_paths:
        _remove_path(merged, path)
    return merged


def changed_paths(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Dotted paths whose value differs, sorted: the deepest object member that changed.

    A key added or removed is reported at its own path (``runtimes.nvidia``), not as its
    parent, so a role can say exactly what it touched.
    """
    paths: list[str] = []

    def walk(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str) -> None:
        for key in old.keys() | new.keys():
            path = f"{prefix}{key}"
            if key not in old or key not in new:
                paths.append(path)
            elif isinstance(old[key], dict) and isinstance(new[key], dict):
                walk(old[key], new[key], f"{path}.")
            elif _canonical(old[key]) != _canonical(new[key]):
                paths.append(path)

    walk(before, after, "")
    return sorted(paths)


def diff_daemon_config(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, str]:
    """``{"before": text, "after": text}`` for Ansible's --diff; None (no file) renders as ''.

    Both sides are rendered the same way so that the diff shows changes of meaning only, not
    the reformatting of a hand-written file.
    """
    return {
        "before": "" if before is None else render_daemon_json(before),
        "after": "" if after is None else render_daemon_json(after),
    }


def default_runtime_warning(config: Mapping[str, Any]) -> str | None:
    """A warning when ``default-runtime`` names a runtime dockerd will not know, else None.

    dockerd refuses to start with such a file; a warning (not a failure) leaves room for a
    later task that adds the runtime.
    """
    if "default-runtime" not in config:
        return None
    name = config["default-runtime"]
    runtimes = config.get("runtimes")
    known = set(BUILTIN_RUNTIMES) | (set(runtimes) if isinstance(runtimes, dict) else set())
    if isinstance(name, str) and name in known:
        return None
    return (
        f"default-runtime is {name!r}, which is neither in runtimes nor a built-in runtime "
        f"({', '.join(sorted(BUILTIN_RUNTIMES))}); dockerd will refuse to start with this file"
    )


def plan_daemon_json_update(
    current_text: str | None,
    desired: Mapping[str, Any],
    remove: Iterable[str] = (),
    source: str = "daemon.json",
) -> dict[str, Any]:
    """Everything the module needs to decide and report, from the file's text (None: no file).

    Returns ``{"changed": bool, "before": dict | None, "after": dict, "content": str,
    "changed_keys": [str], "diff": {"before": str, "after": str}, "warnings": [str]}``.
    Raises DaemonJsonError when a key the update changes would make dockerd refuse the file
    (a value of the wrong JSON type) or listen on plain tcp:// (daemon_config_problems).
    ``content`` is what to write when ``changed``. A missing file whose merged result is empty
    stays missing: an empty object means the same to dockerd.
    """
    before = None if current_text is None else parse_daemon_json(current_text, source)
    after = merge_daemon_config(before or {}, desired, remove)
    # No file and nothing to put in it is no change; otherwise compare meanings.
    changed = bool(after) if before is None else not configs_equal(before, after)
    changed_keys = changed_paths(before or {}, after)
    if changed:
        # Refuse to write what dockerd would not start with (it decodes these keys strictly)
        # or what would open it to the network, for the keys this update changes; keys the
        # file already had are the host's own and are left as they are.
        touched = {path.split(".", 1)[0] for path in changed_keys}
        problems = [
            (key, accepted)
            for key, accepted in daemon_config_problems(after)
            if key.split(".", 1)[0] in touched
        ]
        if problems:
            raise DaemonJsonError(
                f"{source}: not written, dockerd would refuse it or listen unprotected: "
                + "; ".join(f"{key} must be {accepted}" for key, accepted in problems)
            )
    warning = default_runtime_warning(after)
    return {
        "changed": changed,
        "before": before,
        "after": after,
        "content": render_daemon_json(after),
        "changed_keys": changed_keys,
        "diff": diff_daemon_config(before, after if changed or before is not None else None),
        "warnings": [warning] if warning else [],
    }


# Keys whose JSON type dockerd checks when it loads the file: a value of another type makes it
# refuse to start ("cannot unmarshal number into Go struct field ... of type string").
_BOOL_KEYS = frozenset(
    {
        "debug",
        "experimental",
        "icc",
        "init",
        "ip-forward",
        "ip-masq",
        "iptables",
        "ip6tables",
        "ipv6",
        "live-restore",
        "no-new-privileges",
        "selinux-enabled",
        "tls",
        "tlsverify",
        "userland-proxy",
    }
)
_INT_KEYS = frozenset(
    {
        "max-concurrent-downloads",
        "max-concurrent-uploads",
        "max-download-attempts",
        "mtu",
        "shutdown-timeout",
    }
)
_STRING_KEYS = frozenset(
    {
        "bip",
        "cgroup-parent",
        "data-root",
        "default-runtime",
        "exec-root",
        "group",
        "log-driver",
        "log-level",
        "storage-driver",
        "tlscacert",
        "tlscert",
        "tlskey",
        "userns-remap",
    }
)
_STRING_LIST_KEYS = frozenset(
    {
        "dns",
        "dns-opts",
        "dns-search",
        "exec-opts",
        "hosts",
        "insecure-registries",
        "labels",
        "registry-mirrors",
        "storage-opts",
    }
)
_STRING_MAP_KEYS = frozenset({"log-opts"})
_OBJECT_KEYS = frozenset({"default-ulimits", "features", "runtimes"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def daemon_config_problems(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What dockerd would refuse, or what would open it, in ``config``: ``[(key, accepted)]``.

    The known rules, for engines without ``dockerd --validate`` and for the controller, where
    no dockerd runs: the JSON type of the keys dockerd decodes strictly, and a plain (non-TLS)
    ``tcp://`` listener in ``hosts``, which gives anyone who reaches the port root on the host.
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(config, Mapping):
        return [("", "a JSON object")]
    for key, value in config.items():
        if key in _BOOL_KEYS and not isinstance(value, bool):
            problems.append((key, "a JSON boolean (true/false)"))
        elif key in _INT_KEYS and not _is_int(value):
            problems.append((key, "a JSON integer"))
        elif key in _STRING_KEYS and not isinstance(value, str):
            problems.append((key, "a JSON string"))
        elif key in _STRING_LIST_KEYS and not (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        ):
            problems.append((key, "a JSON array of strings"))
        elif key in _STRING_MAP_KEYS:
            if not isinstance(value, Mapping):
                problems.append((key, "a JSON object of strings"))
            else:
                for option, text in value.items():
                    if not isinstance(text, str):
                        problems.append((f"{key}.{option}", 'a JSON string (quote it: "5", not 5)'))
        elif key in _OBJECT_KEYS and not isinstance(value, Mapping):
            problems.append((key, "a JSON object"))
        elif key == "runtimes" and isinstance(value, Mapping):
            for name, runtime in value.items():
                if not isinstance(runtime, Mapping) or not isinstance(runtime.get("path"), str):
                    problems.append((f"runtimes.{name}", 'an object with a "path" string'))
    hosts = config.get("hosts")
    if isinstance(hosts, list):
        tls = config.get("tlsverify") is True
        for host in hosts:
            if isinstance(host, str) and host.startswith("tcp://") and not tls:
                problems.append(
                    (
                        "hosts",
                        "unix:// or fd:// listeners (a tcp:// listener without tlsverify gives "
                        "anyone who reaches the port root on the host)",
                    )
                )
                break
    return problems


# dockerd --validate (moby/moby#42393, Docker 23.0 and later; documented in docker/cli#3108):
# loads the file as the daemon would, prints "configuration OK" and exits 0, or prints
# "unable to configure the Docker daemon with file <path>: <reason>" and exits 1. It catches
# what the known rules above cannot: directives no option matches and every key's JSON type.
# An older dockerd (Debian 12's 20.10) answers "unknown flag: --validate" and exits 1; then the
# known rules are what checks the file. Real outputs: tests/fixtures/dockerd_validate/.
DOCKERD_VALIDATE_TIMEOUT_S = 30
_DOCKERD_REFUSAL = "unable to configure the Docker daemon with file"


def dockerd_validate_argv(dockerd: str, config_path: str) -> list[str]:
    """The command that validates ``config_path`` without starting a daemon."""
    return [dockerd, "--validate", "--config-file", config_path]


def dockerd_validation(rc: int | None, stdout: str, stderr: str) -> dict[str, str]:
    """Classify a ``dockerd --validate`` run: ``{"verdict": ..., "message": ...}``.

    ``rc`` None: it did not finish in time. Verdicts: ``ok``; ``refused`` (the reason dockerd
    gave); ``unsupported`` (a dockerd without --validate); ``unavailable`` (no dockerd, or no
    answer), where only the known rules check the file.
    """
    text = "\n".join(part.strip() for part in (stdout or "", stderr or "") if part and part.strip())
    if rc is None:
        return {
            "verdict": "unavailable",
            "message": f"dockerd --validate did not answer within {DOCKERD_VALIDATE_TIMEOUT_S} s",
        }
    if "unknown flag: --validate" in text or "flag provided but not defined: -validate" in text:
        return {"verdict": "unsupported", "message": "this dockerd has no --validate (Docker < 23)"}
    if rc == 127:
        return {"verdict": "unavailable", "message": text or "dockerd not found"}
    if rc == 0:
        return {"verdict": "ok", "message": text or "configuration OK"}
    lines = [line for line in text.splitlines() if line.strip()]
    reason = next((line for line in lines if _DOCKERD_REFUSAL in line), lines[-1] if lines else "")
    if _DOCKERD_REFUSAL in reason:
        # The temporary file's name means nothing to the user: keep what follows it.
        reason = reason.split(": ", 1)[1] if ": " in reason else reason
    return {"verdict": "refused", "message": reason or f"exit status {rc}"}
