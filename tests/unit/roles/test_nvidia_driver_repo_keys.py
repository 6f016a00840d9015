"""nvidia_driver's repository key follows the repository directory: NVIDIA signs debian13 with
8793F200.pub and every other directory with 3bf863cc.pub (NVIDIA/cuda-repo-management#38, #39;
../shared/facts/nvidia-stack.md), and the role variables still override both.

The role's own defaults and vars files are templated with Ansible's Templar, as a play would,
for the facts of each supported distribution; nothing here restates the role's expressions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.llmops.gpu_serving.plugins.module_utils.input_rules import (
    ROLES,
    check_inputs,
)

ROLE = Path(__file__).resolve().parents[3] / "roles" / "nvidia_driver"
COMMON = ("3bf863cc.pub", "EB693B3035CD5710E231E123A4B469963BF863CC")
DEBIAN13 = ("8793F200.pub", "02182E60104FCDC26EAE1B8597A5D4CB8793F200")
BASE = "https://developer.download.nvidia.com/compute/cuda/repos"

# (distribution, major version, version, the vars file tasks/assert.yml loads), directory, key
HOSTS = [
    (("Debian", "13", "13.1", "Debian.yml"), "debian13", DEBIAN13),
    (("Debian", "12", "12.8", "Debian.yml"), "debian12", COMMON),
    (("Ubuntu", "24", "24.04", "Ubuntu.yml"), "ubuntu2404", COMMON),
    (("Ubuntu", "22", "22.04", "Ubuntu.yml"), "ubuntu2204", COMMON),
]
DEBIAN13_HOST = HOSTS[0][0]


def _trusted(value):
    # Ansible 2.19 templates only trusted strings; the role's files are trusted in a real play.
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    return value


def key_of(host: tuple[str, str, str, str], **overrides) -> tuple[str, str]:
    distribution, major, version, vars_file = host
    variables = {}
    for path in ("defaults/main.yml", "vars/main.yml", f"vars/{vars_file}"):
        variables.update(yaml.safe_load((ROLE / path).read_text()))
    variables.update(overrides)
    variables = _trusted(variables)
    variables["ansible_facts"] = {
        "distribution": distribution,
        "distribution_major_version": major,
        "distribution_version": version,
        "architecture": "x86_64",
        "kernel": "6.1.0-28-amd64",
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    url = templar.template(trust_as_template("{{ __nvidia_driver_key_url }}"))
    fingerprint = templar.template(trust_as_template("{{ __nvidia_driver_fingerprint }}"))
    return url, fingerprint


@pytest.mark.parametrize(("host", "directory", "key"), HOSTS)
def test_the_default_key_is_the_one_nvidia_signs_the_directory_with(host, directory, key):
    assert key_of(host) == (f"{BASE}/{directory}/x86_64/{key[0]}", key[1])


def test_the_key_follows_a_chosen_directory_not_the_host():
    # NVIDIA/cuda-repo-management#38's workaround: a Debian 13 host on the debian12 directory.
    url, fingerprint = key_of(DEBIAN13_HOST, nvidia_driver_repo_distro="debian12")
    assert (url, fingerprint) == (f"{BASE}/debian12/x86_64/{COMMON[0]}", COMMON[1])


def test_the_role_variables_override_the_default_key():
    url, fingerprint = key_of(
        DEBIAN13_HOST,
        nvidia_driver_repo_key_url="file:///srv/mirror/key.asc",
        nvidia_driver_repo_key_fingerprint="ff69 95cf d0ae 914d 5423 884e df8b 9a20 51d6 70a2",
    )
    assert (url, fingerprint) == (
        "file:///srv/mirror/key.asc",
        "FF6995CFD0AE914D5423884EDF8B9A2051D670A2",
    )


def test_the_input_rules_take_an_empty_fingerprint_as_the_directory_default():
    specs = {
        role: yaml.safe_load((ROLE.parent / role / "meta" / "argument_specs.yml").read_text())[
            "argument_specs"
        ]["main"]["options"]
        for role in ROLES
    }
    assert check_inputs(specs, {"nvidia_driver_repo_key_fingerprint": ""}).errors == []
    short = check_inputs(specs, {"nvidia_driver_repo_key_fingerprint": "8793F200"}).errors
    assert len(short) == 1
    assert "nvidia_driver_repo_key_fingerprint" in str(short[0])
    assert "40-digit hex fingerprint (or empty)" in str(short[0])
