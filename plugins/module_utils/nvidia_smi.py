"""Read what ``nvidia-smi`` prints: CSV queries, the default table's header, ``-L`` and failures.

Private to the llmops.gpu_serving collection: the nvidia_gpu_info module and the nvidia_driver
role's checks use it; it is not a public API and may change without notice.

Plain functions on strings and dicts, standard library only, so they are unit-tested on real
captured outputs without Ansible. The one function that runs anything, ``gather_gpu_info``,
takes the runner as an argument.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# What the nvidia_gpu_info module asks for. Every field exists since driver 510 (compute_cap
# was added in 510; 470's nvidia-smi rejects it with exit code 2).
QUERY_FIELDS: tuple[str, ...] = (
    "index",
    "name",
    "uuid",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "memory.used",
    "compute_cap",
    "persistence_mode",
    "mig.mode.current",
)

# Field -> key in the parsed dict, and how the value is typed. Fields not listed here keep
# their name (dots become underscores) and their text.
_FIELD_KEYS: dict[str, tuple[str, str]] = {
    "index": ("index", "int"),
    "count": ("count", "int"),
    "name": ("name", "str"),
    "gpu_name": ("name", "str"),
    "uuid": ("uuid", "str"),
    "gpu_uuid": ("uuid", "str"),
    "serial": ("serial", "str"),
    "gpu_serial": ("serial", "str"),
    "pci.bus_id": ("pci_bus_id", "str"),
    "gpu_bus_id": ("pci_bus_id", "str"),
    "driver_version": ("driver_version", "str"),
    "vbios_version": ("vbios_version", "str"),
    "memory.total": ("memory_total", "mib"),
    "memory.used": ("memory_used", "mib"),
    "memory.free": ("memory_free", "mib"),
    # Kept as text: "8.9" and "8.10" would collide as floats, and 12.0 must not become 12.
    "compute_cap": ("compute_capability", "str"),
    "persistence_mode": ("persistence_mode", "enabled"),
    "mig.mode.current": ("mig_mode", "str"),
    "temperature.gpu": ("temperature_c", "int"),
    "utilization.gpu": ("utilization_pct", "int"),
    "utilization.memory": ("memory_utilization_pct", "int"),
    "fan.speed": ("fan_speed_pct", "int"),
    "power.draw": ("power_draw_w", "float"),
    "power.limit": ("power_limit_w", "float"),
}

# How nvidia-smi spells "no value": bracketed in CSV output, bare in the table.
_NO_VALUE = re.compile(
    r"^\[?(N/A|Not Supported|Unknown Error|Insufficient Permissions|GPU is lost)\]?$"
)
_HEADER_UNIT = re.compile(r"\s*\[[^\]]*\]$")
_NUMBER_WITH_UNIT = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(?:MiB|%|W|MHz|C)?$")

_SMI_VERSION = re.compile(r"NVIDIA-SMI(?: version)?\s*:?\s+(\d[\w.]*)")
_DRIVER_VERSION = re.compile(r"Driver Version\s*:\s*(\S+)", re.IGNORECASE)
_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*(\S+)", re.IGNORECASE)
_LIST_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: (\S+?)\)\s*$")

_NO_DRIVER = re.compile(r"couldn.t communicate with the NVIDIA driver")
_MISMATCH = re.compile(r"Driver/library version mismatch")
_NVML_LIBRARY = re.compile(r"NVML library version:\s*(\S+)")
_NVML_UNKNOWN = re.compile(r"Failed to initialize NVML: Unknown Error")

# Exit codes from the RETURN VALUE list of the nvidia-smi manual; 18 is NVML's
# LIB_RM_VERSION_MISMATCH, which nvidia-smi passes through.
EXIT_DRIVER_NOT_LOADED = 9
EXIT_VERSION_MISMATCH = 18

FAILURE_HINTS: dict[str, str] = {
    "not_installed": (
        "nvidia-smi is not installed or not on PATH: install the driver's utilities package "
        "(nvidia-utils-<branch>) or point nvidia_smi_path at the binary."
    ),
    "no_driver": (
        "The NVIDIA kernel module is not loaded. Check `lsmod | grep nvidia`, that DKMS built "
        "the module for the running kernel (`dkms status`, linux-headers-$(uname -r)), that "
        "Secure Boot is off or the module is signed (`mokutil --sb-state`), that nouveau is "
        "blacklisted, and reboot after installing the driver."
    ),
    "version_mismatch": (
        "The user-space driver libraries were changed while the old kernel module is still "
        "loaded (an upgrade without a reboot). Reboot the host; unloading the nvidia modules "
        "also works when no process holds the GPU. Hold the driver packages so it does not "
        "happen again behind your back."
    ),
    "nvml_unknown": (
        "NVML could not open the GPU device nodes. Inside a container this is usually a lost "
        "device-cgroup grant after `systemctl daemon-reload` on the host: restart the "
        "container. On the host, check /dev/nvidia* and dmesg for Xid errors."
    ),
    "timeout": (
        "nvidia-smi did not answer in time: a hung GPU or driver (look for Xid errors in "
        "`dmesg`, a GPU fallen off the bus, or a process stuck on the device). Reset the GPU "
        "(`nvidia-smi -r`) or reboot the host; raise the module's timeout only for hosts with "
        "many GPUs whose first query is slow."
    ),
    "other": "nvidia-smi failed; its output above says why.",
}


class NvidiaSmiError(Exception):
    """nvidia-smi could not report the GPUs; ``failure`` is what classify_failure returned."""

    def __init__(self, failure: dict[str, Any]):
        super().__init__(failure["message"])
        self.failure = failure


def query_command(nvidia_smi_path: str) -> list[str]:
    """The argv that asks nvidia-smi for QUERY_FIELDS, one CSV line a GPU, without units."""
    return [
        nvidia_smi_path,
        "--query-gpu=" + ",".join(QUERY_FIELDS),
        "--format=csv,noheader,nounits",
    ]


def _typed(kind: str, text: str) -> Any:
    if _NO_VALUE.match(text):
        return None
    if kind == "str":
        return text
    if kind == "enabled":
        if text in ("Enabled", "Disabled"):
            return text == "Enabled"
        raise ValueError(f"expected Enabled or Disabled, got {text!r}")
    number = _NUMBER_WITH_UNIT.match(text)
    if not number:
        raise ValueError(f"expected a number, got {text!r}")
    if kind == "float":
        return float(number.group(1))
    return int(float(number.group(1))) if "." in number.group(1) else int(number.group(1))


def mib_to_gib(mib: int | None) -> float | None:
    """MiB as nvidia-smi prints them, in GiB rounded to two places (22528 -> 22.0)."""
    return None if mib is None else round(mib / 1024, 2)


def _header_matches(cells: list[str], fields: Sequence[str]) -> bool:
    names = [_HEADER_UNIT.sub("", cell) for cell in cells]
    return names == list(fields)


def parse_query_csv(text: str, fields: Sequence[str]) -> list[dict[str, Any]]:
    """Parse ``--query-gpu=<fields> --format=csv[,noheader][,nounits]`` output, one dict a line.

    A header line (with or without units) is recognised and skipped. Values are typed by field:
    ints for indexes, counts, MiB, %, temperatures; floats for watts; booleans for
    persistence_mode; text otherwise; ``[N/A]``, ``[Not Supported]`` and the like become None.
    Memory fields give ``<key>_mib`` and ``<key>_gib``. Raises ValueError when a line does not
    have one value a field or a value does not fit its field.
    """
    rows: list[dict[str, Any]] = []
    lines = [line for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines):
        cells = [cell.strip() for cell in line.split(",")]
        if number == 0 and _header_matches(cells, fields):
            continue
        if len(cells) != len(fields):
            raise ValueError(
                f"nvidia-smi line has {len(cells)} values for {len(fields)} fields: {line!r}"
            )
        row: dict[str, Any] = {}
        for position, field in enumerate(fields):
            cell = cells[position]
            key, kind = _FIELD_KEYS.get(field, (field.replace(".", "_"), "str"))
            if kind == "mib":
                mib = _typed("int", cell)
                row[f"{key}_mib"] = mib
                row[f"{key}_gib"] = mib_to_gib(mib)
            else:
                row[key] = _typed(kind, cell)
        rows.append(row)
    return rows


def parse_header(table_text: str) -> dict[str, str | None]:
    """Versions from the default table's header, or from ``nvidia-smi --version``.

    Returns nvidia_smi_version, driver_version and cuda_version; a value the output lacks
    (331 has no CUDA field, 430 prints ``N/A``) is None. The nvidia-smi binary and the
    driver can differ (a container's old nvidia-smi on a newer host), so both are kept.
    Raises ValueError when the text has no nvidia-smi header at all.
    """
    smi = _SMI_VERSION.search(table_text)
    driver = _DRIVER_VERSION.search(table_text)
    cuda = _CUDA_VERSION.search(table_text)
    if not smi and not driver:
        raise ValueError("no nvidia-smi version header in the output")

    def value(match: re.Match[str] | None) -> str | None:
        if match is None or _NO_VALUE.match(match.group(1)):
            return None
        return match.group(1)

    return {
        "nvidia_smi_version": value(smi),
        "driver_version": value(driver),
        "cuda_version": value(cuda),
    }


def parse_gpu_list(text: str) -> list[dict[str, Any]]:
    """``nvidia-smi -L`` lines as dicts of index, name and uuid (other lines are ignored)."""
    gpus = []
    for line in text.splitlines():
        match = _LIST_LINE.match(line)
        if match:
            gpus.append({"index": int(match[1]), "name": match[2], "uuid": match[3]})
    return gpus


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def classify_failure(rc: int | None, stdout: str, stderr: str) -> dict[str, Any]:
    """Say why nvidia-smi failed, from its exit code and what it printed.

    ``rc`` is None when nvidia-smi could not be run at all. Returns kind (not_installed,
    no_driver, version_mismatch, nvml_unknown or other), rc, message (the line that says
    what went wrong), output (all it printed), nvml_library_version (mismatch only) and
    hint (what the operator should do).
    """
    output = "\n".join(part.strip("\n") for part in (stdout, stderr) if part.strip())
    library = _NVML_LIBRARY.search(output)
    if rc is None or rc == 127:
        kind = "not_installed"
        message = _first_line(output) or "nvidia-smi was not found"
    elif _MISMATCH.search(output) or rc == EXIT_VERSION_MISMATCH:
        kind = "version_mismatch"
        message = (
            "Failed to initialize NVML: Driver/library version mismatch"
            if _MISMATCH.search(output)
            else _first_line(output) or "nvidia-smi exited with 18"
        )
    elif _NO_DRIVER.search(output) or rc == EXIT_DRIVER_NOT_LOADED:
        kind = "no_driver"
        message = _first_line(output) or "NVIDIA driver is not loaded"
    elif _NVML_UNKNOWN.search(output):
        kind = "nvml_unknown"
        message = "Failed to initialize NVML: Unknown Error"
    else:
        kind = "other"
        message = _first_line(output) or f"nvidia-smi exited with {rc}"
    return {
        "kind": kind,
        "rc": rc,
        "message": message,
        "output": output,
        "nvml_library_version": library.group(1)
        if kind == "version_mismatch" and library
        else None,
        "hint": FAILURE_HINTS[kind],
    }


def summarize(gpus: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over parsed GPUs: count, names, memory (total and smallest card), versions.

    The smallest card is what tensor parallelism is bounded by, so it is reported next to
    the total.
    """
    totals = [gpu["memory_total_mib"] for gpu in gpus if gpu.get("memory_total_mib") is not None]
    total_mib = sum(totals)
    min_mib = min(totals) if totals else None
    return {
        "count": len(gpus),
        "names": sorted({gpu["name"] for gpu in gpus if gpu.get("name")}),
        "memory_total_mib": total_mib,
        "memory_total_gib": mib_to_gib(total_mib),
        "memory_min_mib": min_mib,
        "memory_min_gib": mib_to_gib(min_mib),
        "compute_capabilities": sorted(
            {gpu["compute_capability"] for gpu in gpus if gpu.get("compute_capability")},
            key=lambda cap: tuple(int(part) for part in cap.split(".")),
        ),
        "driver_versions": sorted(
            {gpu["driver_version"] for gpu in gpus if gpu.get("driver_version")}
        ),
    }


# (rc, stdout, stderr), as AnsibleModule.run_command returns them.
Runner = Callable[[list[str]], tuple[int, str, str]]

# Seconds one nvidia-smi call may take. A healthy host answers in well under a second per GPU;
# a hung driver or GPU makes nvidia-smi block forever, often in the kernel.
DEFAULT_TIMEOUT_S = 30.0


def timeout_failure(argv: Sequence[str], timeout: float) -> dict[str, Any]:
    """The classified failure of a call that did not finish within ``timeout`` seconds."""
    return {
        "kind": "timeout",
        "rc": None,
        "message": f"{' '.join(argv)} did not answer within {timeout:g} s",
        "output": "",
        "nvml_library_version": None,
        "hint": FAILURE_HINTS["timeout"],
    }


def subprocess_runner(timeout: float, env_update: Mapping[str, str] | None = None) -> Runner:
    """A Runner that gives each call ``timeout`` seconds, then kills it.

    A call that runs out of time raises NvidiaSmiError (kind ``timeout``). A process that does
    not die when killed (blocked in the kernel, as a hung driver leaves nvidia-smi) is left
    behind after a short wait rather than waited for: the caller must answer.
    """
    if not timeout > 0 or timeout == float("inf"):
        raise ValueError(f"timeout must be a number of seconds above 0, got {timeout!r}")
    env = dict(os.environ, **(env_update or {}))

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            return 127, "", f"{argv[0]}: {exc.strerror}"
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            # A process blocked in the kernel does not die: leave it rather than wait for it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
            raise NvidiaSmiError(timeout_failure(argv, timeout)) from None
        return proc.returncode, out, err

    return run


def gather_gpu_info(
    run: Runner,
    nvidia_smi_path: str,
    expected_driver_version: str | None = None,
    expected_gpu_count: int | None = None,
) -> dict[str, Any]:
    """Ask nvidia-smi for the GPUs and the versions, check them against what is expected.

    ``run(argv)`` returns (rc, stdout, stderr). Raises NvidiaSmiError with a classified
    failure when nvidia-smi fails, and ValueError (with both sides named) when the driver
    version or the GPU count differs from what was expected.
    """
    rc, out, err = run(query_command(nvidia_smi_path))
    if rc != 0:
        raise NvidiaSmiError(classify_failure(rc, out, err))
    gpus = parse_query_csv(out, QUERY_FIELDS)
    if not gpus:
        raise NvidiaSmiError(classify_failure(rc, out or "No GPUs were listed", err))

    rc, table, err = run([nvidia_smi_path])
    if rc != 0:
        raise NvidiaSmiError(classify_failure(rc, table, err))
    header = parse_header(table)
    summary = summarize(gpus)

    if expected_driver_version is not None:
        wrong = [gpu for gpu in gpus if gpu.get("driver_version") != expected_driver_version]
        if wrong:
            found = ", ".join(f"GPU {gpu['index']}: {gpu.get('driver_version')}" for gpu in wrong)
            raise ValueError(
                f"expected NVIDIA driver {expected_driver_version}, nvidia-smi reports {found}"
            )
    if expected_gpu_count is not None and len(gpus) != expected_gpu_count:
        raise ValueError(
            f"expected {expected_gpu_count} GPU(s), nvidia-smi lists {len(gpus)}: "
            + ", ".join(f"{gpu['index']}: {gpu['name']}" for gpu in gpus)
        )

    driver_versions = summary["driver_versions"]
    return {
        "driver_version": header["driver_version"]
        or (driver_versions[0] if len(driver_versions) == 1 else None),
        "cuda_version": header["cuda_version"],
        "nvidia_smi_version": header["nvidia_smi_version"],
        "gpu_count": len(gpus),
        "gpus": gpus,
        "summary": summary,
    }
