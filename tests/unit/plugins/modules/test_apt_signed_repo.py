"""Tests of the apt_signed_repo module: main() with a real gpg and keys generated for the run.

The keys are served from file:// URLs (what the simulated vendor repositories use) and from an
HTTP server on 127.0.0.1; the keyring and the source file go to a temporary directory.
"""

import http.server
import json
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llmops.gpu_serving.plugins.module_utils.apt_signed_repo import (
    primary_fingerprints,
)
from ansible_collections.llmops.gpu_serving.plugins.modules import apt_signed_repo

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")

SOURCE = "deb [signed-by=/usr/share/keyrings/test.gpg] file:///srv/repo /\n"


def gpg(home: Path, *args: str) -> bytes:
    return subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), *args], check=True, capture_output=True
    ).stdout


def generate_key(home: Path, uid: str) -> str:
    """A signing key without passphrase, with an encryption subkey; return its fingerprint."""
    gpg(home, "--passphrase", "", "--quick-generate-key", uid, "ed25519", "sign", "never")
    listing = gpg(home, "--with-colons", "--list-keys", uid).decode()
    fingerprint = primary_fingerprints(listing)[0]
    gpg(home, "--passphrase", "", "--quick-add-key", fingerprint, "cv25519", "encr", "never")
    return fingerprint


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two keys, their armored and binary exports, and a file holding both."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    out = tmp_path_factory.mktemp("keys")
    first = generate_key(home, "Repository One <one@example.invalid>")
    second = generate_key(home, "Repository Two <two@example.invalid>")
    (out / "one.asc").write_bytes(gpg(home, "--armor", "--export", first))
    (out / "one.gpg").write_bytes(gpg(home, "--export", first))
    (out / "two.asc").write_bytes(gpg(home, "--armor", "--export", second))
    (out / "both.asc").write_bytes(gpg(home, "--armor", "--export", first, second))
    (out / "not-a-key.asc").write_text("<html>404 Not Found</html>\n")
    return {"one": first, "two": second, "dir": out}


def run_module(capsys, check_mode=False, diff=False, **args):
    """Run main() with these module args; return (failed, result)."""
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        apt_signed_repo.main()
    result = json.loads(capsys.readouterr().out)
    assert (exited.value.code != 0) == bool(result.get("failed"))
    return bool(result.get("failed")), result


@pytest.fixture
def target(tmp_path, keys):
    """Module arguments for the first key, writing under tmp_path."""
    return {
        "key_url": f"file://{keys['dir']}/one.asc",
        "fingerprint": keys["one"],
        "keyring": str(tmp_path / "keyrings" / "test.gpg"),
        "source_path": str(tmp_path / "sources.list.d" / "test.list"),
        "source_content": SOURCE,
        "fingerprint_name": "role_repo_key_fingerprint",
        "key_url_name": "role_repo_key_url",
    }


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_right_key_writes_binary_keyring_and_source_then_nothing(capsys, target, keys):
    failed, result = run_module(capsys, **target)
    assert not failed, result
    assert result["changed"]
    assert result["keyring_changed"]
    assert result["source_changed"]
    assert result["fingerprint"] == keys["one"]
    # The binary form of the served armored key, as gpg --dearmor writes it.
    assert Path(target["keyring"]).read_bytes() == (keys["dir"] / "one.gpg").read_bytes()
    assert Path(target["source_path"]).read_text() == SOURCE
    assert mode_of(target["keyring"]) == mode_of(target["source_path"]) == 0o644
    assert mode_of(os.path.dirname(target["keyring"])) == 0o755

    failed, again = run_module(capsys, **target)
    assert not failed
    assert not again["changed"]
    assert not again["keyring_changed"]
    assert not again["source_changed"]


def test_wrong_fingerprint_refuses_and_writes_nothing(capsys, target, keys):
    failed, result = run_module(capsys, **dict(target, fingerprint=keys["two"]))
    assert failed
    assert f"has the fingerprint {keys['one']}, expected {keys['two']}" in result["msg"]
    assert "(role_repo_key_fingerprint)" in result["msg"]
    assert "(role_repo_key_url)" in result["msg"]
    assert "Nothing was installed" in result["msg"]
    assert not os.path.lexists(os.path.dirname(target["keyring"]))
    assert not os.path.lexists(os.path.dirname(target["source_path"]))


def test_wrong_fingerprint_leaves_an_existing_repository_as_it_was(capsys, target, keys):
    assert not run_module(capsys, **target)[0]
    before = {p: (Path(p).read_bytes(), os.stat(p).st_mtime_ns) for p in
              (target["keyring"], target["source_path"])}  # fmt: skip
    other = dict(target, key_url=f"file://{keys['dir']}/two.asc", source_content="changed\n")
    failed, result = run_module(capsys, **other)
    assert failed
    assert f"has the fingerprint {keys['two']}" in result["msg"]
    assert before == {p: (Path(p).read_bytes(), os.stat(p).st_mtime_ns) for p in before}


def test_fingerprint_as_pasted_with_spaces_and_lower_case(capsys, target, keys):
    spaced = " ".join(keys["one"][i : i + 4] for i in range(0, 40, 4)).lower()
    failed, result = run_module(capsys, **dict(target, fingerprint=spaced))
    assert not failed
    assert result["fingerprint"] == keys["one"]


def test_second_key_in_the_file_is_refused(capsys, target, keys):
    both = dict(target, key_url=f"file://{keys['dir']}/both.asc")
    failed, result = run_module(capsys, **both)
    assert failed
    assert f"{keys['one']} and {keys['two']} (2 keys, one expected)" in result["msg"]
    assert not os.path.lexists(target["keyring"])


def test_a_file_that_is_no_key_is_refused_naming_both_values(capsys, target, keys):
    page = dict(target, key_url=f"file://{keys['dir']}/not-a-key.asc")
    failed, result = run_module(capsys, **page)
    assert failed
    assert "none (gpg reads no OpenPGP key in it)" in result["msg"]
    assert f"expected {keys['one']}" in result["msg"]


def test_check_mode_checks_the_key_and_writes_nothing(capsys, target, keys):
    failed, result = run_module(capsys, check_mode=True, **dict(target, fingerprint=keys["two"]))
    assert failed
    assert "has the fingerprint" in result["msg"]

    failed, result = run_module(capsys, check_mode=True, **target)
    assert not failed
    assert result["changed"]
    assert not os.path.lexists(os.path.dirname(target["keyring"]))
    assert not os.path.lexists(target["source_path"])

    run_module(capsys, **target)
    failed, result = run_module(capsys, check_mode=True, **target)
    assert not failed
    assert not result["changed"]


def test_armored_keeps_the_key_as_served(capsys, target, keys):
    armored = dict(target, keyring=target["keyring"].replace(".gpg", ".asc"), key_format="armored")
    failed, result = run_module(capsys, **armored)
    assert not failed
    assert result["keyring_changed"]
    assert Path(armored["keyring"]).read_bytes() == (keys["dir"] / "one.asc").read_bytes()


def test_armored_refuses_a_binary_key(capsys, target, keys):
    binary = dict(target, key_url=f"file://{keys['dir']}/one.gpg", key_format="armored")
    failed, result = run_module(capsys, **binary)
    assert failed
    assert "use key_format binary" in result["msg"]
    assert not os.path.lexists(target["keyring"])


def test_binary_key_as_served_is_written_as_is(capsys, target, keys):
    binary = dict(target, key_url=f"file://{keys['dir']}/one.gpg")
    failed, _result = run_module(capsys, **binary)
    assert not failed
    assert Path(target["keyring"]).read_bytes() == (keys["dir"] / "one.gpg").read_bytes()


def test_changed_source_and_mode_are_put_back(capsys, target):
    run_module(capsys, **target)
    Path(target["source_path"]).write_text("deb http://elsewhere /\n")
    os.chmod(target["keyring"], 0o600)
    failed, result = run_module(capsys, **target)
    assert not failed
    assert result["source_changed"]
    assert result["keyring_changed"]
    assert Path(target["source_path"]).read_text() == SOURCE
    assert mode_of(target["keyring"]) == 0o644


def test_diff_names_the_keys_and_shows_the_source(capsys, target, keys):
    failed, result = run_module(capsys, diff=True, check_mode=True, **target)
    assert not failed
    keyring_diff, source_diff = result["diff"]
    assert keyring_diff["before"] == ""
    assert keyring_diff["before_header"].endswith("(absent)")
    assert keyring_diff["after"].startswith(keys["one"] + " (sha256 ")
    assert source_diff["after"] == SOURCE
    assert source_diff["before"] == ""

    run_module(capsys, **target)
    failed, result = run_module(capsys, diff=True, **target)
    assert result["diff"][0]["before"] == result["diff"][0]["after"]


def test_fingerprint_that_is_not_one_is_refused_naming_the_variable(capsys, target):
    failed, result = run_module(capsys, **dict(target, fingerprint="ABCD"))
    assert failed
    assert result["msg"].startswith("role_repo_key_fingerprint must be the full fingerprint")
    assert "'ABCD'" in result["msg"]


def test_missing_key_file_names_the_url_variable(capsys, target, tmp_path):
    failed, result = run_module(capsys, **dict(target, key_url=f"file://{tmp_path}/absent.asc"))
    assert failed
    assert "Cannot download the repository key" in result["msg"]
    assert "(role_repo_key_url)" in result["msg"]
    assert not os.path.lexists(os.path.dirname(target["keyring"]))


@pytest.fixture
def http_root(keys):
    """An HTTP server on 127.0.0.1 serving the keys directory."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(keys["dir"]), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_key_over_http(capsys, target, keys, http_root):
    failed, result = run_module(capsys, **dict(target, key_url=f"{http_root}/one.asc"))
    assert not failed
    assert result["fingerprint"] == keys["one"]

    failed, result = run_module(capsys, **dict(target, key_url=f"{http_root}/absent.asc"))
    assert failed
    assert "status 404" in result["msg"]


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        # gpg 2.2 --with-colons --show-keys of a key with a subkey: the subkey's fpr is skipped.
        (
            "pub:-:255:22:AAAA0000AAAA0000:1700000000:::-:::scSC::::::23::0:\n"
            "fpr:::::::::1111222233334444555566667777888899990000:\n"
            "uid:-::::1700000000::HASH::One <one@example.invalid>::::::::::0:\n"
            "sub:-:255:18:BBBB0000BBBB0000:1700000000::::::e::::::23:\n"
            "fpr:::::::::aaaabbbbccccddddeeeeffff0000111122223333:\n",
            ["1111222233334444555566667777888899990000"],
        ),
        ("", []),
        ("fpr:::::::::1111222233334444555566667777888899990000:\n", []),
    ],
)
def test_primary_fingerprints(listing, expected):
    assert primary_fingerprints(listing) == expected
