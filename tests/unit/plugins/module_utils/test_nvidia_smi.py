"""Tests of module_utils.nvidia_smi over real nvidia-smi outputs (tests/fixtures/nvidia_smi)."""

from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.nvidia_smi import (
    FAILURE_HINTS,
    QUERY_FIELDS,
    NvidiaSmiError,
    classify_failure,
    gather_gpu_info,
    mib_to_gib,
    parse_gpu_list,
    parse_header,
    parse_query_csv,
    query_command,
    subprocess_runner,
    summarize,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "nvidia_smi"

# Lines a pasted terminal transcript adds before the command's own output.
PROMPTS = ("$ ", "# ", "(container) $ ", "root@", "bash-", "[chodera@")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def program_output(name: str) -> str:
    """What nvidia-smi itself printed in a pasted transcript: prompt lines and `echo $?` dropped."""
    lines = fixture(name).splitlines(keepends=True)
    kept = []
    for number, line in enumerate(lines):
        if line.startswith(PROMPTS) or line.strip() == "nvidia-smi":
            continue
        if number and lines[number - 1].startswith("# echo $?"):
            continue
        kept.append(line)
    return "".join(kept)


# --- the default table's header --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("table_550.144.03_1x_t4.txt", ("550.144.03", "550.144.03", "12.4")),
        ("table_550.90.07_2x_h100.txt", ("550.90.07", "550.90.07", "12.4")),
        ("table_550.40.07_1x_rtx4070.txt", ("550.40.07", "550.40.07", "12.4")),
        ("table_550.135_1x_tesla_p4.txt", ("550.135", "550.135", "12.4")),
        ("table_595.84_rtx2080ti-22g_titan-rtx.txt", ("595.84", "595.84", "13.2")),
        ("table_580.126.09_2x_a100-40g.txt", ("580.126.09", "580.126.09", "13.0")),
        ("table_570.133.20_1x_l4.txt", ("570.133.20", "570.133.20", "12.8")),
        ("table_510.47.03_a100-80g_mig.txt", ("510.47.03", "510.47.03", "11.6")),
        ("table_450.57_1x_titan-xp.txt", ("450.57", "450.57", "11.0")),
        # An old nvidia-smi binary in a container on a newer host: the two versions differ.
        ("table_470.256.02-smi_580.95.05-driver.txt", ("470.256.02", "580.95.05", "13.0")),
        ("table_430.14_cuda-na.txt", ("430.14", "430.14", None)),
        ("table_331.62_no-cuda-field.txt", ("331.62", "331.62", None)),
    ],
)
def test_parse_header_reads_real_tables(name, expected):
    header = parse_header(fixture(name))
    assert (
        header["nvidia_smi_version"],
        header["driver_version"],
        header["cuda_version"],
    ) == expected


def test_parse_header_reads_version_output():
    # `nvidia-smi --version` of a 550.90.07 host, as pasted in a public environment report.
    text = (
        "NVIDIA-SMI version  : 550.90.07\n"
        "NVML version        : 550.90\n"
        "DRIVER version      : 550.90.07\n"
        "CUDA Version        : 12.4\n"
    )
    assert parse_header(text) == {
        "nvidia_smi_version": "550.90.07",
        "driver_version": "550.90.07",
        "cuda_version": "12.4",
    }


@pytest.mark.parametrize(
    "name",
    [
        "fail_no-driver_one-line.txt",
        "fail_version-mismatch_nvml-550.144_ci-log.txt",
        "fail_nvml-unknown-error.txt",
        "table_510.47.03_mig_devices.txt",
    ],
)
def test_parse_header_refuses_output_without_a_header(name):
    with pytest.raises(ValueError, match="no nvidia-smi version header"):
        parse_header(fixture(name))


# --- --query-gpu CSV -----------------------------------------------------------------------


def test_query_command_asks_for_every_field_without_units():
    argv = query_command("/usr/bin/nvidia-smi")
    assert argv[0] == "/usr/bin/nvidia-smi"
    assert argv[1] == "--query-gpu=" + ",".join(QUERY_FIELDS)
    assert argv[2] == "--format=csv,noheader,nounits"


def test_parse_query_csv_skips_a_plain_header_and_types_values():
    rows = parse_query_csv(
        fixture("query_compute_cap-compute_mode-driver_version-name-index.csv"),
        ["compute_cap", "compute_mode", "driver_version", "name", "index"],
    )
    assert rows == [
        {
            "compute_capability": "7.0",
            "compute_mode": "Default",
            "driver_version": "570.86.15",
            "name": "NVIDIA TITAN V",
            "index": 0,
        },
        {
            "compute_capability": "8.9",
            "compute_mode": "Default",
            "driver_version": "570.86.15",
            "name": "NVIDIA RTX 5880 Ada Generation",
            "index": 1,
        },
    ]


def test_parse_query_csv_strips_units_from_header_and_values():
    fields = [
        "index",
        "temperature.gpu",
        "utilization.gpu",
        "utilization.memory",
        "fan.speed",
        "pstate",
        "power.draw",
        "clocks.current.sm",
        "clocks.current.memory",
        "clocks.current.graphics",
    ]
    rows = parse_query_csv(fixture("query_units_index-temperature-utilization-power.csv"), fields)
    assert len(rows) == 3
    assert rows[0]["temperature_c"] == 56
    assert rows[0]["utilization_pct"] == 26
    assert rows[0]["memory_utilization_pct"] == 4
    assert rows[0]["fan_speed_pct"] == 34
    assert rows[0]["power_draw_w"] == pytest.approx(83.92)
    assert rows[1]["power_draw_w"] == pytest.approx(78.22)
    # Fields the parser has no type for keep nvidia-smi's text.
    assert rows[0]["pstate"] == "P3"
    assert rows[0]["clocks_current_sm"] == "1320 MHz"


@pytest.mark.parametrize(
    ("name", "fields", "expected"),
    [
        (
            "query_noheader_name-pci.device_id.csv",
            ["name", "pci.device_id"],
            [{"name": "NVIDIA H100 NVL", "pci_device_id": "0x232110DE"}],
        ),
        (
            "query_noheader_nounits_power.draw.csv",
            ["power.draw"],
            [{"power_draw_w": 133.91}, {"power_draw_w": 189.84}, {"power_draw_w": 104.34}],
        ),
        ("query_compute_cap.csv", ["compute_cap"], [{"compute_capability": "8.9"}]),
    ],
)
def test_parse_query_csv_reads_headerless_and_single_field_output(name, fields, expected):
    assert parse_query_csv(fixture(name), fields) == expected


def test_parse_query_csv_refuses_lines_that_do_not_fit_the_fields():
    with pytest.raises(ValueError, match="2 values for 3 fields"):
        parse_query_csv(
            fixture("query_noheader_name-pci.device_id.csv"), ["name", "pci.device_id", "uuid"]
        )


def test_parse_query_csv_refuses_error_text_as_numbers():
    # What a script gets when it parses stdout without looking at the exit code.
    with pytest.raises(ValueError, match="expected a number"):
        parse_query_csv(program_output("fail_nvml-unknown-error.txt"), ["memory.total"])


def test_parse_query_csv_turns_bracketed_no_values_into_none():
    # Constructed line: nvidia-smi's spellings for a value a card does not have.
    line = "0, [N/A], [Not Supported], [N/A], [Unknown Error]\n"
    rows = parse_query_csv(
        line, ["index", "mig.mode.current", "power.draw", "memory.total", "serial"]
    )
    assert rows == [
        {
            "index": 0,
            "mig_mode": None,
            "power_draw_w": None,
            "memory_total_mib": None,
            "memory_total_gib": None,
            "serial": None,
        }
    ]


def test_parse_query_csv_reads_persistence_mode_as_bool():
    rows = parse_query_csv(
        "Enabled, 22528\nDisabled, 81559\n", ["persistence_mode", "memory.total"]
    )
    assert [row["persistence_mode"] for row in rows] == [True, False]
    assert [row["memory_total_gib"] for row in rows] == [22.0, 79.65]
    with pytest.raises(ValueError, match="Enabled or Disabled"):
        parse_query_csv("On\n", ["persistence_mode"])


@pytest.mark.parametrize(
    ("mib", "gib"),
    # Totals as nvidia-smi prints them for real cards (see the table fixtures).
    [(22528, 22.0), (81559, 79.65), (40960, 40.0), (15360, 15.0), (23034, 22.49), (None, None)],
)
def test_mib_to_gib(mib, gib):
    assert mib_to_gib(mib) == gib


# --- nvidia-smi -L ---------------------------------------------------------------------------


def test_parse_gpu_list_reads_four_cards():
    gpus = parse_gpu_list(fixture("list_4x_a10-t4.txt"))
    assert [gpu["index"] for gpu in gpus] == [0, 1, 2, 3]
    assert [gpu["name"] for gpu in gpus] == ["NVIDIA A10", "NVIDIA A10", "Tesla T4", "Tesla T4"]
    assert gpus[2]["uuid"] == "GPU-bf507abe-ec25-2053-5435-1c82511a3ae8"


def test_parse_gpu_list_keeps_names_with_spaces_and_ignores_other_lines():
    gpus = parse_gpu_list(fixture("list_titan-v_rtx-5880.txt"))
    assert gpus[1] == {
        "index": 1,
        "name": "NVIDIA RTX 5880 Ada Generation",
        "uuid": "GPU-7518f6b0-991f-ce2b-3d37-c779130d3137",
    }
    assert parse_gpu_list(fixture("fail_nvml-unknown-error.txt")) == []


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rc", "kind", "message", "nvml_library_version"),
    [
        # Exit codes: 9 and 255 from the manual's RETURN VALUE list, 18 from the pastes.
        (
            "fail_no-driver_one-line.txt",
            9,
            "no_driver",
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running.",
            None,
        ),
        (
            "fail_no-driver_two-lines.txt",
            9,
            "no_driver",
            "NVIDIA-SMI has failed because it couldn\u2018t communicate with the NVIDIA driver.",
            None,
        ),
        (
            "fail_version-mismatch_nvml-535.161.txt",
            18,
            "version_mismatch",
            "Failed to initialize NVML: Driver/library version mismatch",
            "535.161",
        ),
        (
            "fail_version-mismatch_nvml-550.144_ci-log.txt",
            18,
            "version_mismatch",
            "Failed to initialize NVML: Driver/library version mismatch",
            "550.144",
        ),
        (
            "fail_version-mismatch_nvml-570.124.txt",
            18,
            "version_mismatch",
            "Failed to initialize NVML: Driver/library version mismatch",
            "570.124",
        ),
        (
            "fail_version-mismatch_no-nvml-line.txt",
            18,
            "version_mismatch",
            "Failed to initialize NVML: Driver/library version mismatch",
            None,
        ),
        (
            "fail_nvml-unknown-error.txt",
            255,
            "nvml_unknown",
            "Failed to initialize NVML: Unknown Error",
            None,
        ),
        (
            "fail_invalid-field.txt",
            2,
            "other",
            'Field "compute_cap" is not a valid field to query.',
            None,
        ),
    ],
)
def test_classify_failure_on_real_outputs(name, rc, kind, message, nvml_library_version):
    failure = classify_failure(rc, program_output(name), "")
    assert failure["kind"] == kind
    assert failure["rc"] == rc
    assert failure["message"] == message
    assert failure["nvml_library_version"] == nvml_library_version
    assert failure["hint"] == FAILURE_HINTS[kind]
    assert failure["output"] == program_output(name).strip("\n")


def test_classify_failure_uses_the_text_when_the_exit_code_is_unknown():
    # A wrapper that loses the exit code (rc 1) must not hide a version mismatch.
    failure = classify_failure(1, program_output("fail_version-mismatch_nvml-570.124.txt"), "")
    assert failure["kind"] == "version_mismatch"
    assert "Reboot" in failure["hint"]


def test_classify_failure_uses_the_exit_code_when_the_text_is_missing():
    assert classify_failure(9, "", "")["kind"] == "no_driver"
    assert classify_failure(18, "", "")["kind"] == "version_mismatch"
    assert classify_failure(255, "", "")["kind"] == "other"
    assert classify_failure(255, "", "")["message"] == "nvidia-smi exited with 255"


def test_classify_failure_not_installed():
    failure = classify_failure(None, "", "/usr/bin/nvidia-smi: not found")
    assert failure["kind"] == "not_installed"
    assert failure["rc"] is None
    assert failure["message"] == "/usr/bin/nvidia-smi: not found"
    assert "nvidia-utils" in failure["hint"]


def test_classify_failure_reads_stderr_too():
    failure = classify_failure(255, "", program_output("fail_nvml-unknown-error.txt"))
    assert failure["kind"] == "nvml_unknown"
    assert "daemon-reload" in failure["hint"]


# --- summary ---------------------------------------------------------------------------------


def test_summarize_mixed_cards():
    gpus = [
        {
            "name": "NVIDIA GeForce RTX 2080 Ti",
            "memory_total_mib": 22528,
            "compute_capability": "7.5",
            "driver_version": "595.84",
        },
        {
            "name": "NVIDIA TITAN RTX",
            "memory_total_mib": 24576,
            "compute_capability": "7.5",
            "driver_version": "595.84",
        },
    ]
    assert summarize(gpus) == {
        "count": 2,
        "names": ["NVIDIA GeForce RTX 2080 Ti", "NVIDIA TITAN RTX"],
        "memory_total_mib": 47104,
        "memory_total_gib": 46.0,
        "memory_min_mib": 22528,
        "memory_min_gib": 22.0,
        "compute_capabilities": ["7.5"],
        "driver_versions": ["595.84"],
    }


def test_summarize_orders_compute_capabilities_numerically():
    gpus = parse_query_csv(
        fixture("query_compute_cap-compute_mode-driver_version-name-index.csv"),
        ["compute_cap", "compute_mode", "driver_version", "name", "index"],
    )
    gpus.append({"compute_capability": "12.0", "name": "x"})
    assert summarize(gpus)["compute_capabilities"] == ["7.0", "8.9", "12.0"]


def test_summarize_no_gpus():
    assert summarize([])["memory_min_mib"] is None
    assert summarize([])["count"] == 0


# --- gather_gpu_info -------------------------------------------------------------------------


# The query as the simulator prints it for the T4 host of table_550.144.03_1x_t4.txt.
T4_QUERY = (
    "0, Tesla T4, GPU-51a0c0de-3c00-4000-8000-000000000000, 00000000:00:1E.0, 550.144.03, "
    "15360, 1, 7.5, Enabled, [N/A]\n"
)


def runner(answers):
    calls = []

    def run(argv):
        calls.append(argv)
        return answers[len(calls) - 1]

    run.calls = calls
    return run


def test_gather_gpu_info_combines_query_and_table():
    run = runner([(0, T4_QUERY, ""), (0, fixture("table_550.144.03_1x_t4.txt"), "")])
    info = gather_gpu_info(run, "/usr/bin/nvidia-smi", expected_driver_version="550.144.03")
    assert run.calls == [query_command("/usr/bin/nvidia-smi"), ["/usr/bin/nvidia-smi"]]
    assert info["driver_version"] == "550.144.03"
    assert info["cuda_version"] == "12.4"
    assert info["gpu_count"] == 1
    assert info["gpus"][0]["memory_total_gib"] == 15.0
    assert info["gpus"][0]["persistence_mode"] is True
    assert info["gpus"][0]["mig_mode"] is None
    assert info["summary"]["compute_capabilities"] == ["7.5"]


def test_gather_gpu_info_names_both_driver_versions():
    run = runner([(0, T4_QUERY, ""), (0, fixture("table_550.144.03_1x_t4.txt"), "")])
    with pytest.raises(
        ValueError, match=r"expected NVIDIA driver 550\.163\.01.*GPU 0: 550\.144\.03"
    ):
        gather_gpu_info(run, "nvidia-smi", expected_driver_version="550.163.01")


def test_gather_gpu_info_checks_the_count():
    run = runner([(0, T4_QUERY, ""), (0, fixture("table_550.144.03_1x_t4.txt"), "")])
    with pytest.raises(ValueError, match="expected 4 GPU"):
        gather_gpu_info(run, "nvidia-smi", expected_gpu_count=4)


def test_gather_gpu_info_raises_the_classified_failure():
    run = runner([(18, program_output("fail_version-mismatch_nvml-535.161.txt"), "")])
    with pytest.raises(NvidiaSmiError) as raised:
        gather_gpu_info(run, "nvidia-smi")
    assert raised.value.failure["kind"] == "version_mismatch"
    assert raised.value.failure["nvml_library_version"] == "535.161"
    assert len(run.calls) == 1


def test_the_subprocess_runner_returns_what_the_command_printed(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "$LC_ALL $1"\necho oops >&2\nexit 3\n')
    smi.chmod(0o755)
    run = subprocess_runner(10, {"LC_ALL": "C"})
    assert run([str(smi), "-L"]) == (3, "C -L\n", "oops\n")


def test_the_subprocess_runner_kills_a_call_that_never_answers(tmp_path):
    hung = tmp_path / "nvidia-smi"
    hung.write_text("#!/bin/sh\nexec sleep 600\n")
    hung.chmod(0o755)
    run = subprocess_runner(0.3)
    with pytest.raises(NvidiaSmiError) as raised:
        run([str(hung), "-L"])
    failure = raised.value.failure
    assert failure["kind"] == "timeout"
    assert failure["message"] == f"{hung} -L did not answer within 0.3 s"
    assert failure["hint"] == FAILURE_HINTS["timeout"]


def test_the_subprocess_runner_reports_a_missing_binary_as_not_installed(tmp_path):
    rc, out, err = subprocess_runner(5)([str(tmp_path / "absent")])
    assert rc == 127
    assert classify_failure(rc, out, err)["kind"] == "not_installed"


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
def test_the_subprocess_runner_wants_a_positive_finite_timeout(timeout):
    with pytest.raises(ValueError, match="timeout must be a number of seconds above 0"):
        subprocess_runner(timeout)
