"""What a distribution's archive gives: the distro extras (kernel headers) and the Debian mirror
subset."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from .debs import (
    Package,
    run,
)
from .signing import (
    Signer,
    write_packages_index,
    write_signed_release,
)

# The Debian releases of the test images and their codenames (the Debian mirror subset's suites).
DEBIAN_MIRROR_SUITES = {"12": "bookworm", "13": "trixie"}
# The Ubuntu-facts test platform reads its mirror subset at debian/<its codename> (the shared
# prepare playbook names the suite after ansible_distribution_release), and its userland is
# Debian 13's: the same packages as trixie's subset, under the codename its facts say.
UBUNTU_FACTS_MIRROR_SUITES = {"noble": "13"}


def kernel_headers_package() -> Package:
    kernel = platform.release()
    return Package(
        f"linux-headers-{kernel}",
        "1.0-1",
        f"Header files related to Linux kernel {kernel}\n"
        "The distribution archive has this package for its kernels; this machine's "
        "kernel is not one of them.",
        files={
            f"/usr/src/linux-headers-{kernel}/Makefile": (b"# simulated kernel headers\n", 0o644)
        },
        section="kernel",
    )


# Debian's flavour meta package: linux-headers-amd64 depends on the headers of the newest
# kernel of the flavour and so tracks future kernels, where linux-headers-$(uname -r) covers
# only the running one (facts, "Kernels"; Ubuntu's equivalent is linux-headers-generic). Here
# the newest kernel is this machine's.
KERNEL_HEADERS_META = "linux-headers-amd64"


def kernel_headers_meta_package() -> Package:
    kernel = platform.release()
    return Package(
        KERNEL_HEADERS_META,
        "1.0-1",
        "Header files for Linux (meta-package)\n"
        f"Depends on the headers of the newest kernel of the flavour: here {kernel}.",
        depends=[f"linux-headers-{kernel}"],
        section="kernel",
    )


# --- Debian mirror subset -------------------------------------------------------------------------

# What the roles install from the distribution's own archive, one apt transaction per line (so
# that alternatives such as docker.io and the repackaged docker-ce never meet). Test hosts see only
# this subset and the vendor repositories: a role that needs a package missing here fails in the
# tests with apt's "has no installation candidate" instead of quietly reaching the internet.
DEBIAN_MIRROR_GROUPS = (
    ("dkms", "build-essential", "initramfs-tools"),  # nvidia_driver: module build, nouveau off
    ("docker.io",),  # docker_engine source distro; the simulated docker-ce's dependencies
    ("containerd", "runc"),  # containerd.io stand-in
    ("python3-docker",),  # Docker SDK for the vllm_container module and community.docker
    ("rsync", "acl"),  # model_sync transfers; become_user to the unprivileged model owner
    ("python3-venv", "python3-pip"),  # model_sync's huggingface_hub virtualenv
    ("unattended-upgrades",),  # present on Ubuntu hosts; the driver role configures it
    ("libxml2", "gcc"),  # cuda_toolkit: what NVIDIA's runfile installer needs
)

# Per-release additions: Debian 13 splits the docker CLI out of docker.io into docker-cli (only
# Recommended, so a --no-install-recommends install of docker.io has no `docker` command);
# Debian 13's ansible-core (2.19, the collection's Ansible) lets a test host run a play on
# itself under a local connection (molecule/nvidia_driver_paths, tasks/local_connection.yml).
DEBIAN_MIRROR_RELEASE_GROUPS = {"13": (("docker-cli",), ("ansible-core",))}


def image_id(release: str) -> str:
    return run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", f"llmops-test/debian:{release}"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def debian_mirror_debs(release: str, cache: Path) -> Path:
    """The .debs DEBIAN_MIRROR_GROUPS need on top of the test image of a release.

    Resolved by apt inside that very image (download only, no recommends), so the set is exactly
    what a role's apt transaction will ask for; cached by image and package list, because
    another image (rebuilt base packages) can need other versions.
    """
    groups = DEBIAN_MIRROR_GROUPS + DEBIAN_MIRROR_RELEASE_GROUPS.get(release, ())
    key = hashlib.sha256((image_id(release) + repr(groups)).encode()).hexdigest()[:16]
    target = cache / f"debian{release}-mirror-{key}"
    if (target / ".complete").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    installs = " && ".join(
        "apt-get install -qq --download-only --no-install-recommends -o Dir::Cache::archives=/out "
        + " ".join(group)
        for group in groups
    )
    print(f"[vendor-repo] downloading Debian {release} packages for the mirror", file=sys.stderr)
    run(
        [
            "docker", "run", "--rm", "-v", f"{target}:/out", f"llmops-test/debian:{release}",
            "sh", "-ec", f"mkdir -p /out/partial && apt-get update -qq && {installs}"
            " && rm -rf /out/partial /out/lock && chmod -R a+rX /out",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    (target / ".complete").write_text(key + "\n")
    return target


def write_debian_mirror(directory: Path, debs: Path, signer: Signer, codename: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for deb in debs.glob("*.deb"):
        os.link(deb, directory / deb.name)
    write_packages_index(directory, directory, ".")
    write_signed_release(
        directory,
        signer,
        {"Origin": "Debian", "Label": f"Debian {codename} (harness subset)", "Suite": codename,
         "Codename": codename, "Architectures": "amd64 all"},
    )  # fmt: skip
