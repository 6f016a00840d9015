"""cuda_toolkit_state: absent, after every check of the install (molecule passes the test
files in name order and destroys the hosts next): it removes what the role installed and is
idempotent."""

import re
import subprocess
from pathlib import Path

import pytest

testinfra_hosts = ["all"]

HOME = "/usr/local/cuda-12.4"


@pytest.fixture(scope="module")
def removal(request):
    """The role with cuda_toolkit_state: absent, applied twice to all hosts; both outputs."""
    playbook = Path(__file__).resolve().parent.parent / "absent.yml"
    inventory = request.config.getoption("ansible_inventory")
    runs = []
    for _ in range(2):
        run = subprocess.run(
            ["ansible-playbook", "-i", inventory, str(playbook)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        runs.append(run.stdout)
    return runs


def test_second_removal_changes_nothing(host, removal):
    recap = re.search(rf"^{re.escape(host.backend.host)}\s*:.*$", removal[1], re.MULTILINE)
    assert recap, removal[1]
    assert " changed=0 " in recap.group(0), removal[1]


def test_removal_leaves_no_toolkit(host, removal):
    for path in ("/usr/local/cuda", HOME, "/etc/profile.d/cuda-toolkit.sh"):
        assert not host.file(path).exists, path
    assert not host.file("/etc/ld.so.conf.d/cuda-toolkit.conf").exists
    assert "libcudart" not in host.check_output("ldconfig -p")
    packages = host.check_output("dpkg-query -W -f '${Package} ${db:Status-Status}\\n'")
    assert [line for line in packages.splitlines() if re.match(r"\S+-12-4 installed$", line)] == []
    assert host.run("update-alternatives --query cuda").rc == 2
    assert host.run("bash -lc 'command -v nvcc'").rc != 0
