"""Tests of the model_sync module's main(): argument handling around module_utils.model_sync_run."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.gpu_serving.plugins.modules import model_sync


def run_module(capsys, **args):
    """Run main() with these module args; return (failed, result)."""
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        model_sync.main()
    result = json.loads(capsys.readouterr().out)
    assert (exited.value.code != 0) == bool(result.get("failed"))
    return bool(result.get("failed")), result


def warning_texts(result: dict) -> list[str]:
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "source"
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text("{}\n")
    (root / "sub" / "weights.bin").write_bytes(b"\x01" * 4096)
    return root


def test_check_mode_reports_and_writes_nothing_then_sync_and_noop(capsys, tmp_path, source):
    dest = tmp_path / "dest"
    failed, result = run_module(
        capsys, source=str(source), dest=str(dest), _ansible_check_mode=True, _ansible_diff=True
    )
    assert not failed
    assert result["changed"] is True
    assert result["transfer"] == ["config.json", "sub/weights.bin"]
    assert "+ sub/weights.bin (4096 bytes" in result["diff"]["after"]
    assert not dest.exists()

    failed, result = run_module(capsys, source=str(source), dest=str(dest))
    assert not failed
    assert result["files_transferred"] == 2
    assert "diff" not in result
    failed, result = run_module(capsys, source=str(source), dest=str(dest))
    assert result["changed"] is False


def test_progress_file_is_removed_when_the_module_ends(capsys, tmp_path, source):
    progress = tmp_path / "progress.json"
    failed, _ = run_module(
        capsys, source=str(source), dest=str(tmp_path / "d"), progress_file=str(progress)
    )
    assert not failed
    assert not progress.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"dest": "relative/dir"}, "dest must be an absolute path"),
        ({"workers": -1}, "workers must be 0 or more"),
        ({"source": "models/qwen"}, "is not one of"),
        ({"revision": "main"}, "revision applies to hf:// sources only"),
        ({"owner": "no-such-user-llmops"}, "does not exist on the host"),
    ],
)
def test_bad_arguments_fail_clearly(capsys, tmp_path, source, args, message):
    failed, result = run_module(
        capsys, **dict({"source": str(source), "dest": str(tmp_path / "d")}, **args)
    )
    assert failed
    assert message in result["msg"]
    assert not (tmp_path / "d").exists()


def test_missing_owner_only_warns_in_check_mode(capsys, tmp_path, source):
    failed, result = run_module(
        capsys,
        source=str(source),
        dest=str(tmp_path / "d"),
        owner="no-such-user-llmops",
        _ansible_check_mode=True,
    )
    assert not failed
    assert any("does not exist (yet)" in text for text in warning_texts(result))


def test_hub_source_without_the_client_names_the_fix(capsys, tmp_path, monkeypatch):
    import builtins  # noqa: PLC0415

    real_import = builtins.__import__

    def no_hub(name, *args, **kwargs):
        if name == "huggingface_hub":
            raise ImportError("No module named 'huggingface_hub'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hub)
    failed, result = run_module(capsys, source="hf://Qwen/Qwen3-30B-A3B", dest=str(tmp_path / "d"))
    assert failed
    assert "ansible_python_interpreter" in result["msg"]


def test_documentation_parses_and_lists_every_option():
    import inspect  # noqa: PLC0415
    import re  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    documented = yaml.safe_load(model_sync.DOCUMENTATION)["options"]
    yaml.safe_load(model_sync.EXAMPLES)
    returned = yaml.safe_load(model_sync.RETURN)
    spec = set(re.findall(r"^\s{12}(\w+)=dict\(", inspect.getsource(model_sync.main), re.M))
    assert spec == set(documented)
    assert {"files_total", "bytes_total", "bytes_transferred", "throughput", "revision"} <= set(
        returned
    )
