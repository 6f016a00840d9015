"""Verify llmops.gpu_serving.cuda_toolkit by behaviour: Debian 12 got CUDA 12.4 from NVIDIA's
(simulated) debian12 repository, Ubuntu 24.04 (the Ubuntu-facts platform) from the (simulated)
runfile, since NVIDIA's ubuntu2404 repository starts at CUDA 12.5. Both must look the same to a
user: /usr/local/cuda, nvcc 12.4 on a login shell's PATH, libcudart through the dynamic linker,
and no driver."""

import json
import os
import re
from pathlib import Path

import pytest

testinfra_hosts = ["all"]

VENDOR_VARS = json.loads(
    (
        Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "tests/output/vendor-repo/vendor-vars.json"
    ).read_text()
)
HOME = "/usr/local/cuda-12.4"
# Same list as __cuda_toolkit_driver_package_regex in roles/cuda_toolkit/vars/main.yml.
DRIVER_PACKAGE = re.compile(
    r"^(cuda-drivers(-[0-9]+)?|nvidia-driver(-[0-9]+)?(-server|-open)?|nvidia-open(-[0-9]+)?"
    r"|nvidia-dkms-.+|nvidia-kernel-.+|nvidia-utils-.+|nvidia-compute-utils-.+"
    r"|libnvidia-compute-.+|libcuda1|nvidia-smi|nvidia-persistenced|nvidia-fabricmanager(-[0-9]+)?)$"
)


@pytest.fixture
def method(host):
    # What cuda_toolkit_method auto picks for 12.4 (roles/cuda_toolkit/vars/main.yml).
    info = host.system_info
    return {("debian", "12"): "repo", ("debian", "13"): "runfile", ("ubuntu", "24"): "runfile"}[
        (info.distribution, info.release.split(".")[0])
    ]


def test_the_platforms_are_the_scenarios(host):
    info = host.system_info
    if host.backend.get_hostname().endswith("-ubuntu2404"):
        assert (info.distribution, info.release, info.codename) == ("ubuntu", "24.04", "noble")
    else:
        assert (info.distribution, info.release.split(".")[0]) == ("debian", "12")


def installed_packages(host) -> dict[str, str]:
    out = host.check_output("dpkg-query -W -f '${Package} ${Version} ${db:Status-Status}\\n'")
    return {
        name: version
        for name, version, status in (line.split() for line in out.splitlines())
        if status == "installed"
    }


def test_cuda_link_resolves_to_the_toolkit(host):
    assert host.check_output("readlink -f /usr/local/cuda") == HOME


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_login_shell_runs_nvcc_12_4(host, shell):
    out = host.check_output(f"{shell} -lc 'command -v nvcc && nvcc --version'")
    assert out.splitlines()[0] == f"{HOME}/bin/nvcc"
    assert "Cuda compilation tools, release 12.4, V12.4.131" in out


def test_non_login_shell_is_left_alone(host):
    # Only login shells read /etc/profile.d: the role does not touch /etc/environment.
    assert "cuda" not in host.file("/etc/environment").content_string


def test_dynamic_linker_finds_libcudart(host):
    conf = host.file("/etc/ld.so.conf.d/cuda-toolkit.conf")
    assert conf.mode == 0o644
    assert f"{HOME}/lib64" in conf.content_string.splitlines()
    cache = host.check_output("ldconfig -p")
    line = rf"libcudart\.so\.12 \(libc6,x86-64\) => {re.escape(HOME)}/lib64/libcudart\.so\.12$"
    assert re.search(line, cache, re.MULTILINE), cache


def test_no_driver_was_installed(host):
    drivers = sorted(name for name in installed_packages(host) if DRIVER_PACKAGE.match(name))
    assert drivers == []
    assert host.run("command -v nvidia-smi").rc != 0


def test_repository_install(host, method):
    if method != "repo":
        pytest.skip("Ubuntu 24.04 uses the runfile")
    packages = installed_packages(host)
    assert packages["cuda-toolkit-12-4"] == "12.4.1-1"
    # The entry NVIDIA's cuda-keyring package writes, so both can coexist without a Signed-By
    # conflict; apt must accept it as a whole.
    url = VENDOR_VARS["vendor_repo_cuda_base_url"] + "/debian12/x86_64/"
    source = host.file("/etc/apt/sources.list.d/cuda-debian12-x86_64.list")
    assert source.content_string == (
        f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {url} /\n"
    )
    keyring = host.check_output(
        "gpg --show-keys --with-colons /usr/share/keyrings/cuda-archive-keyring.gpg"
    )
    assert VENDOR_VARS["vendor_repo_cuda_key_fingerprint"] in keyring
    update = host.run("apt-get update -o APT::Update::Error-Mode=any")
    assert update.rc == 0, update.stderr
    # NVIDIA's packages own /usr/local/cuda through alternatives; the role pins the selection.
    query = host.check_output("update-alternatives --query cuda")
    assert "Status: manual" in query
    assert f"Value: {HOME}" in query


def test_runfile_install(host, method):
    if method != "runfile":
        pytest.skip("Debian 12 uses NVIDIA's repository")
    assert "cuda-toolkit-12-4" not in installed_packages(host)
    # The runfile method does not configure NVIDIA's repository.
    assert host.run("grep -rl compute/cuda/repos /etc/apt/sources.list.d").stdout == ""
    assert json.loads(host.file(f"{HOME}/version.json").content_string)["cuda"]["version"] == (
        "12.4.1"
    )
    assert host.file("/usr/local/cuda").linked_to == HOME
    log = host.file("/var/log/cuda-installer.log").content_string
    assert "Option: --toolkit" in log
    assert "Driver:   Not Selected" in log
    assert "--driver" not in log


def test_runfile_left_nothing_behind(host):
    found = host.run(
        "find / -xdev \\( -name 'cuda_*_linux.run' -o -name '*.cuda-runfile' "
        "-o -name '*.cuda-key' \\) -print"
    )
    assert found.stdout == ""
