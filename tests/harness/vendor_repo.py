#!/usr/bin/env python3
"""Build the simulated vendor apt repositories the role tests install from.

No GPU and no route to NVIDIA's or Docker's servers exist where this collection is tested, so
the harness builds signed apt repositories that hold packages with the real names, versions and
dependency shapes (facts: ../shared/facts/nvidia-stack.md) and small, honest payloads:

* NVIDIA CUDA network repo (flat, one per distro directory like NVIDIA's): the 550 driver family
  at 550.144.03 (the target), 550.127.05 (an older one to replace) and 550.163.01 (a newer one
  the pin must refuse), cuda-drivers-550, cuda-toolkit-12-4 only where NVIDIA ships it
  (ubuntu2204, debian12) and 12-5/12-6 elsewhere, cuda-keyring. debian13 is as NVIDIA publishes
  it: no 550 branch, signed with a key of its own (8793F200.pub). `nvidia-smi` answers from a GPU
  profile; the "kernel module" is a boot-time unit, so a driver change is only live after a
  reboot, as on a real host.
* NVIDIA Container Toolkit repo (flat, `stable/deb/amd64`): the four packages at 1.17.7-1
  (vulnerable), 1.17.8-1 and 1.18.0-1. `nvidia-container-runtime` execs runc, so Docker's
  `--runtime nvidia` really runs containers; `nvidia-ctk runtime configure --runtime=docker`
  writes daemon.json exactly as NVIDIA's does, and `nvidia-ctk system create-dev-char-symlinks`
  links /dev/char to the simulated driver's device nodes (payloads/nvidia-ctk).
* Docker CE repo (`linux/<distro>/dists/<codename>/stable`): docker-ce, docker-ce-cli and
  containerd.io (1.7 and 2.x) whose dependencies pull Debian's real docker.io and containerd,
  and the docker-compose-plugin and docker-buildx-plugin CLI plugins; suites bookworm, trixie
  and noble (Ubuntu 24.04, for the Ubuntu-facts test platform).
* A simulated distro extra: `linux-headers-<running kernel>`, which every real distro archive has
  for its own kernels but Debian's archive cannot have for this machine's kernel.
* A Debian mirror subset per release (`debian/<codename>`, flat): the packages the roles install
  from the distribution's archive (DEBIAN_MIRROR_GROUPS) and their dependencies, downloaded once
  from Debian and re-signed with the distro-extras key, so that test hosts need no network;
  `debian/noble` holds trixie's for the Ubuntu-facts platform, whose userland is Debian 13's.

Each repository is signed with its own throwaway key, generated at the first build and kept
under tests/output/cache/gpg for the next ones (Signer). The output
directory gets `vendor-vars.yml`: the file:// URLs, key URLs and fingerprints that scenarios pass
to the roles through the same variables a real user sets.

The build is skipped when the recipe (this file, the payloads and the profiles) is unchanged.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "vendor_repo"
PAYLOADS = FIXTURES / "payloads"
PROFILES = FIXTURES / "profiles"
DEFAULT_PROFILE = "seed-4x-rtx2080ti-22g.json"

DRIVER_VERSIONS = ("550.127.05", "550.144.03", "550.163.01")
NCT_VERSIONS = ("1.17.7-1", "1.17.8-1", "1.18.0-1")
DOCKER_VERSIONS = ("27.5.1", "28.0.1")
# containerd.io has versions of its own, without a distribution suffix, and moves independently
# of docker-ce: 1.7.25-1 is the one Docker 27.5.1 shipped with; a 2.x release is there too, as
# in Docker's repository today, and 1.7 -> 2.x is no supported in-place upgrade (facts).
CONTAINERD_IO_VERSIONS = ("1.7.25-1", "2.0.5-1")
# The Compose and Buildx CLI plugins, named and versioned as in Docker's repository
# (https://docs.docker.com/engine/install/ubuntu/ installs docker-buildx-plugin and
# docker-compose-plugin next to docker-ce; versions <upstream>-1~<distro>.<release>~<codename>):
# the releases of Docker 27.5.1's time and a newer one each, so that a pin can be seen to hold.
DOCKER_PLUGIN_VERSIONS = {
    "docker-compose-plugin": ("2.32.4", "2.33.1"),
    "docker-buildx-plugin": ("0.20.0", "0.21.1"),
}

# NVIDIA's CUDA repo directories and what each holds (facts: ubuntu2404 starts at CUDA 12.5),
# and the file name of the key each is signed with. NVIDIA's debian13 directory has no 550 driver
# branch and a signing key of its own, 8793F200.pub, instead of 3bf863cc (facts, "What real
# hosts do"; NVIDIA/cuda-repo-management#38, #39): the simulated one is built the same way, so a
# Debian 13 network install of 550.144.03 is refused as on a real host (molecule
# nvidia_driver_paths). Newer driver branches and CUDA 13 (what the real directory holds) are
# not simulated.
CUDA_COMMON_KEY_FILE = "3bf863cc.pub"
CUDA_DEBIAN13_KEY_FILE = "8793F200.pub"
CUDA_REPOS = {
    "ubuntu2204": {"family": "ubuntu", "toolkits": ("12.4.1", "12.5.1", "12.6.3"), "drivers": True},
    "ubuntu2404": {"family": "ubuntu", "toolkits": ("12.5.1", "12.6.3"), "drivers": True},
    "debian12": {"family": "debian", "toolkits": ("12.4.1", "12.5.1", "12.6.3"), "drivers": True},
    "debian13": {"family": "debian", "toolkits": ("12.6.3",), "drivers": False},
}
# The directories signed with a key other than the common one: directory -> (signer, key file).
CUDA_OWN_KEYS = {"debian13": ("cuda-debian13", CUDA_DEBIAN13_KEY_FILE)}

# Docker's suites: codename -> (the version's distribution part, the Debian release whose
# docker.io is repackaged as docker-ce; see repackage_docker_ce). Ubuntu's archive cannot be
# fetched here, so the noble suite repackages Debian 13's docker.io: the Ubuntu 24.04 test
# platform (tests/harness/build-ubuntu-facts-image.sh) has Debian 13's userland. Its versions
# are Docker's for noble, 5:27.5.1-1~ubuntu.24.04~noble (facts, "Docker").
DOCKER_DISTS = {
    "debian": {"bookworm": ("debian.12", "12"), "trixie": ("debian.13", "13")},
    "ubuntu": {"noble": ("ubuntu.24.04", "13")},
}

# The Debian releases of the test images and their codenames (the Debian mirror subset's suites).
DEBIAN_MIRROR_SUITES = {"12": "bookworm", "13": "trixie"}
# The Ubuntu-facts test platform reads its mirror subset at debian/<its codename> (the shared
# prepare playbook names the suite after ansible_distribution_release), and its userland is
# Debian 13's: the same packages as trixie's subset, under the codename its facts say.
UBUNTU_FACTS_MIRROR_SUITES = {"noble": "13"}

NVCC_BUILDS = {
    # release -> (V string, build date line, build id), as `nvcc --version` prints them
    "12.4.1": ("V12.4.131", "Thu_Mar_28_02:18:24_PDT_2024", "cuda_12.4.r12.4/compiler.34097967_0"),
    "12.5.1": ("V12.5.82", "Thu_Jun__6_02:18:23_PDT_2024", "cuda_12.5.r12.5/compiler.34385749_0"),
    "12.6.3": ("V12.6.85", "Thu_Nov_14_01:23:24_PST_2024", "cuda_12.6.r12.6/compiler.35059454_0"),
}


@dataclass
class Package:
    name: str
    version: str
    description: str
    depends: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    replaces: list[str] = field(default_factory=list)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # path -> (content, mode)
    conffiles: list[str] = field(default_factory=list)
    postinst: str | None = None
    prerm: str | None = None
    postrm: str | None = None
    architecture: str = "amd64"
    section: str = "multiverse/devel"

    @property
    def filename(self) -> str:
        version = self.version.split(":", 1)[-1]
        return f"{self.name}_{version}_{self.architecture}.deb"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


# dpkg-deb clamps the archive's timestamps to SOURCE_DATE_EPOCH (dpkg 1.18.11 and later,
# reproducible-builds.org's convention): the same package content gives the same .deb in every
# build, so a rebuild of the repositories leaves the hashes that test hosts' package lists hold
# valid (otherwise a host that read the lists before a rebuild fails with "Hash Sum mismatch").
REPRODUCIBLE_ENV = {**os.environ, "SOURCE_DATE_EPOCH": "1735689600"}


def recipe_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted([Path(__file__), *PAYLOADS.rglob("*"), *PROFILES.rglob("*")]):
        if path.is_file():
            digest.update(str(path.relative_to(HERE.parent)).encode())
            digest.update(path.read_bytes())
    digest.update(platform.release().encode())
    return digest.hexdigest()[:16]


def payload(name: str) -> bytes:
    path = PAYLOADS / name
    if not path.is_file():
        sys.exit(f"vendor_repo: payload {path} is missing")
    return path.read_bytes()


def text(content: str) -> bytes:
    return textwrap.dedent(content).lstrip().encode()


def build_deb(pkg: Package, pool: Path, workdir: Path) -> Path:
    root = workdir / f"{pkg.name}-{pkg.version.replace(':', '_')}"
    (root / "DEBIAN").mkdir(parents=True)
    for rel, (content, mode) in pkg.files.items():
        dest = root / rel.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
        dest.chmod(mode)
    control = [
        f"Package: {pkg.name}",
        f"Version: {pkg.version}",
        f"Architecture: {pkg.architecture}",
        "Maintainer: llmops.gpu_serving test harness <harness@llmops.invalid>",
        f"Section: {pkg.section}",
        "Priority: optional",
    ]
    for key, values in (
        ("Depends", pkg.depends),
        ("Provides", pkg.provides),
        ("Conflicts", pkg.conflicts),
        ("Replaces", pkg.replaces),
    ):
        if values:
            control.append(f"{key}: {', '.join(values)}")
    summary, _, body = pkg.description.partition("\n")
    control.append(f"Description: {summary} (simulated for tests)")
    control.append(" Built by the llmops.gpu_serving test harness: same name, version and")
    control.append(" dependency shape as the vendor's package, stand-in payload.")
    if body.strip():
        control.extend(f" {line}" if line.strip() else " ." for line in body.strip().splitlines())
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    if pkg.conffiles:
        (root / "DEBIAN" / "conffiles").write_text("\n".join(pkg.conffiles) + "\n")
    for script_name in ("postinst", "prerm", "postrm"):
        script = getattr(pkg, script_name)
        if script:
            path = root / "DEBIAN" / script_name
            path.write_text("#!/bin/sh\nset -e\n" + textwrap.dedent(script).lstrip())
            path.chmod(0o755)
    pool.mkdir(parents=True, exist_ok=True)
    deb = pool / pkg.filename
    run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
        stdout=subprocess.DEVNULL,
        env=REPRODUCIBLE_ENV,
    )
    return deb


# --- the NVIDIA driver family ------------------------------------------------------------------

# The boot-time kernel of the simulation (payloads/nvidia-sim-kernel): nouveau or the nvidia
# module built for the running kernel, /proc/driver/nvidia/version, NVSwitch entries.
KMOD_UNIT = text(
    """
    [Unit]
    Description=Load the NVIDIA kernel module (simulated: payloads/nvidia-sim-kernel boot)
    DefaultDependencies=no
    After=local-fs.target
    Before=nvidia-persistenced.service

    [Service]
    Type=oneshot
    RemainAfterExit=yes
    ExecStartPre=/bin/mkdir -p /run/nvidia-sim
    ExecStart=/usr/lib/nvidia-sim/nvidia-sim-kernel boot

    [Install]
    WantedBy=sysinit.target
    """
)


# `modprobe nouveau` and `modprobe -r nouveau` reach the simulated kernel through modprobe.d's
# install and remove commands (modprobe.d(5)): a container has no kernel modules of its own.
MODPROBE_NOUVEAU_CONF = "/lib/modprobe.d/nvidia-sim-nouveau.conf"
MODPROBE_NOUVEAU = text(
    """
    # llmops.gpu_serving test harness: nouveau of the simulated kernel (nvidia-sim-kernel).
    install nouveau /usr/lib/nvidia-sim/nvidia-sim-kernel load nouveau
    remove nouveau /usr/lib/nvidia-sim/nvidia-sim-kernel unload nouveau
    """
)


def driver_packages(family: str, version: str) -> list[Package]:
    """The driver family of one version, named as NVIDIA names it for Ubuntu or Debian, with
    both kernel module flavours: proprietary and open (NVIDIA's Ubuntu packaging:
    nvidia-driver-<branch>-open, nvidia-dkms-<branch>-open, nvidia-kernel-source-<branch>-open
    as on packages.ubuntu.com; its Debian repositories: nvidia-kernel-open-dkms beside
    nvidia-kernel-dkms, either of which nvidia-driver accepts)."""
    branch = version.split(".", 1)[0]
    nvidia_smi_files = {
        "/usr/bin/nvidia-smi": (payload("nvidia-smi"), 0o755),
        "/usr/share/nvidia-sim/driver-version": (f"{version}\n".encode(), 0o644),
        "/etc/nvidia-sim/gpus.json": ((PROFILES / DEFAULT_PROFILE).read_bytes(), 0o644),
    }
    persistenced_files = {
        "/usr/bin/nvidia-persistenced": (payload("nvidia-persistenced"), 0o755),
        "/lib/systemd/system/nvidia-persistenced.service": (
            payload("nvidia-persistenced.service"),
            0o644,
        ),
    }

    def dkms_files(flavour: str) -> dict[str, tuple[bytes, int]]:
        return {
            "/lib/systemd/system/nvidia-sim-kmod.service": (KMOD_UNIT, 0o644),
            MODPROBE_NOUVEAU_CONF: (MODPROBE_NOUVEAU, 0o644),
            "/usr/lib/nvidia-sim/nvidia-sim-kernel": (payload("nvidia-sim-kernel"), 0o755),
            "/usr/share/nvidia-sim/module-version": (f"{version}\n".encode(), 0o644),
            "/usr/share/nvidia-sim/module-flavour": (f"{flavour}\n".encode(), 0o644),
        }

    # DKMS builds the module for every kernel with headers when the package is configured; it
    # is "loaded" at the next boot (nvidia-sim-kmod.service), so a driver change needs a reboot
    # before nvidia-smi works, exactly as on a real host.
    dkms_postinst = """
        /usr/lib/nvidia-sim/nvidia-sim-kernel build
        if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
        systemctl enable nvidia-sim-kmod.service >/dev/null 2>&1 || true
        """

    def dkms_postrm(flavour: str) -> str:
        # `dkms remove` takes the package's modules from every kernel (the files of the package
        # are gone already, so this is shell, not nvidia-sim-kernel).
        return f"""
        if [ "$1" = remove ] || [ "$1" = purge ]; then
            for module in /lib/modules/*/updates/dkms/nvidia.ko; do
                [ -f "$module" ] || continue
                if grep -qx 'flavour={flavour}' "$module"; then rm -f "$module"; fi
            done
        fi
        """

    persistenced_postinst = """
        if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
        """

    if family == "ubuntu":
        rev = f"{version}-0ubuntu1"
        exact = f"(= {rev})"
        return [
            Package(
                f"nvidia-kernel-common-{branch}",
                rev,
                "Shared files used with the kernel module",
                section="multiverse/libs",
            ),
            Package(
                f"nvidia-dkms-{branch}",
                rev,
                "NVIDIA DKMS package",
                depends=[f"nvidia-kernel-common-{branch} {exact}"],
                provides=["nvidia-dkms-kernel"],
                conflicts=[f"nvidia-dkms-{branch}-open"],
                replaces=[f"nvidia-dkms-{branch}-open"],
                files=dkms_files("proprietary"),
                postinst=dkms_postinst,
                postrm=dkms_postrm("proprietary"),
            ),
            Package(
                f"nvidia-kernel-source-{branch}-open",
                rev,
                "NVIDIA kernel source package (open kernel module)",
                section="multiverse/kernel",
            ),
            Package(
                f"nvidia-dkms-{branch}-open",
                rev,
                "NVIDIA DKMS package (open kernel module)",
                depends=[
                    f"nvidia-kernel-common-{branch} {exact}",
                    f"nvidia-kernel-source-{branch}-open {exact}",
                ],
                provides=["nvidia-dkms-kernel"],
                conflicts=[f"nvidia-dkms-{branch}"],
                replaces=[f"nvidia-dkms-{branch}"],
                files=dkms_files("open"),
                postinst=dkms_postinst,
                postrm=dkms_postrm("open"),
            ),
            Package(
                f"libnvidia-compute-{branch}",
                rev,
                "NVIDIA libcompute package",
                section="multiverse/libs",
            ),
            Package(
                f"nvidia-utils-{branch}",
                rev,
                "NVIDIA driver support binaries",
                depends=[f"libnvidia-compute-{branch} {exact}"],
                files=nvidia_smi_files,
                conffiles=["/etc/nvidia-sim/gpus.json"],
            ),
            Package(
                f"nvidia-compute-utils-{branch}",
                rev,
                "NVIDIA compute utilities",
                depends=[f"libnvidia-compute-{branch} {exact}"],
                files=persistenced_files,
                postinst=persistenced_postinst,
            ),
            Package(
                f"nvidia-driver-{branch}",
                rev,
                "NVIDIA driver metapackage",
                depends=[
                    f"nvidia-dkms-{branch} {exact}",
                    f"nvidia-utils-{branch} {exact}",
                    f"nvidia-compute-utils-{branch} {exact}",
                    f"libnvidia-compute-{branch} {exact}",
                    f"nvidia-kernel-common-{branch} {exact}",
                ],
                conflicts=[f"nvidia-driver-{branch}-open"],
            ),
            Package(
                f"nvidia-driver-{branch}-open",
                rev,
                "NVIDIA driver (open kernel) metapackage",
                depends=[
                    f"nvidia-dkms-{branch}-open {exact}",
                    f"nvidia-utils-{branch} {exact}",
                    f"nvidia-compute-utils-{branch} {exact}",
                    f"libnvidia-compute-{branch} {exact}",
                    f"nvidia-kernel-common-{branch} {exact}",
                ],
                conflicts=[f"nvidia-driver-{branch}"],
            ),
            *cuda_drivers_packages(branch, version, f"nvidia-driver-{branch} {exact}"),
        ]
    rev = f"{version}-1"
    exact = f"(= {rev})"
    return [
        Package(
            "nvidia-kernel-dkms",
            rev,
            "NVIDIA binary kernel module DKMS source",
            provides=["nvidia-kernel"],
            conflicts=["nvidia-kernel-open-dkms"],
            replaces=["nvidia-kernel-open-dkms"],
            files=dkms_files("proprietary"),
            postinst=dkms_postinst,
            postrm=dkms_postrm("proprietary"),
            section="non-free/kernel",
        ),
        Package(
            "nvidia-kernel-open-dkms",
            rev,
            "NVIDIA open kernel module DKMS source",
            provides=["nvidia-kernel"],
            conflicts=["nvidia-kernel-dkms"],
            replaces=["nvidia-kernel-dkms"],
            files=dkms_files("open"),
            postinst=dkms_postinst,
            postrm=dkms_postrm("open"),
            section="non-free/kernel",
        ),
        Package("libcuda1", rev, "NVIDIA CUDA Driver Library", section="non-free/libs"),
        Package(
            "nvidia-smi",
            rev,
            "NVIDIA System Management Interface",
            depends=[f"libcuda1 {exact}"],
            files=nvidia_smi_files,
            conffiles=["/etc/nvidia-sim/gpus.json"],
            section="non-free/utils",
        ),
        Package(
            "nvidia-persistenced",
            rev,
            "daemon to maintain persistent software state",
            files=persistenced_files,
            postinst=persistenced_postinst,
            section="non-free/utils",
        ),
        Package(
            "nvidia-driver",
            rev,
            "NVIDIA metapackage",
            depends=[
                f"nvidia-kernel-dkms {exact} | nvidia-kernel-open-dkms {exact}",
                f"nvidia-smi {exact}",
                f"nvidia-persistenced {exact}",
                f"libcuda1 {exact}",
            ],
            section="non-free/x11",
        ),
        *cuda_drivers_packages(branch, version, f"nvidia-driver {exact}"),
    ]


# nvidia-fabricmanager.service as NVIDIA's package ships it (an [Install] section, not enabled by
# the package: NVIDIA's instructions `systemctl enable` and `start` it); Type=simple here, the
# stand-in does not fork.
FABRICMANAGER_UNIT = text(
    """
    [Unit]
    Description=NVIDIA fabric manager service
    After=network-online.target nvidia-sim-kmod.service

    [Service]
    Type=simple
    ExecStart=/usr/bin/nv-fabricmanager -c /usr/share/nvidia/nvswitch/fabricmanager.cfg
    LimitCORE=infinity

    [Install]
    WantedBy=multi-user.target
    """
)


def fabricmanager_package(branch: str, version: str) -> Package:
    """NVIDIA's nvidia-fabricmanager-<branch> at <version>-1, in the CUDA repositories of both
    distributions (e.g. ubuntu1804/x86_64/nvidia-fabricmanager-460_460.32.03-1_amd64.deb as
    Azure/azhpc-images installs it): the NVSwitch manager, which must match the driver exactly."""
    return Package(
        f"nvidia-fabricmanager-{branch}",
        f"{version}-1",
        "Fabric Manager for NVSwitch based systems",
        files={
            "/usr/bin/nv-fabricmanager": (
                payload("nv-fabricmanager").replace(b"@VERSION@", version.encode()),
                0o755,
            ),
            "/lib/systemd/system/nvidia-fabricmanager.service": (FABRICMANAGER_UNIT, 0o644),
            "/usr/share/nvidia/nvswitch/fabricmanager.cfg": (
                b"# simulated Fabric Manager configuration\nLOG_LEVEL=4\n",
                0o644,
            ),
        },
        conffiles=["/usr/share/nvidia/nvswitch/fabricmanager.cfg"],
        postinst="if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n",
    )


def cuda_drivers_packages(branch: str, version: str, driver_dep: str) -> list[Package]:
    rev = f"{version}-1"
    return [
        fabricmanager_package(branch, version),
        Package(
            f"cuda-drivers-{branch}",
            rev,
            "CUDA Driver meta-package, branch-specific",
            depends=[driver_dep],
        ),
        Package(
            "cuda-drivers",
            rev,
            "CUDA Driver meta-package",
            depends=[f"cuda-drivers-{branch} (= {rev})"],
        ),
    ]


def cuda_toolkit_packages(release: str) -> list[Package]:
    major, minor, _patch = release.split(".")
    short = f"{major}.{minor}"
    dashed = f"{major}-{minor}"
    rev = f"{release}-1"
    vstring, built_on, build = NVCC_BUILDS[release]
    nvcc = text(
        f"""
        #!/bin/sh
        # Stand-in for nvcc {short} (llmops.gpu_serving test harness): prints the version banner.
        case "$1" in
          --version|-V)
            cat <<'BANNER'
        nvcc: NVIDIA (R) Cuda compiler driver
        Copyright (c) 2005-2024 NVIDIA Corporation
        Built on {built_on}
        Cuda compilation tools, release {short}, {vstring}
        Build {build}
        BANNER
            ;;
          *)
            echo "nvcc fatal   : this is a stand-in nvcc; only --version is simulated" >&2
            exit 1
            ;;
        esac
        """
    )
    version_json = (
        json.dumps(
            {
                "cuda": {"name": "CUDA SDK", "version": release},
                "cuda_nvcc": {"name": "CUDA NVCC", "version": vstring.lstrip("V")},
            },
            indent=3,
        ).encode()
        + b"\n"
    )
    prefix = f"/usr/local/cuda-{short}"
    # NVIDIA's packages register /usr/local/cuda and /usr/local/cuda-<major> as alternatives,
    # highest version first (the priority here is the simulation's choice).
    priority = f"{major}{minor}"
    alternatives = (
        f"/usr/local/cuda cuda {prefix} {priority}",
        f"/usr/local/cuda-{major} cuda-{major} {prefix} {priority}",
    )
    return [
        Package(
            f"cuda-nvcc-{dashed}", rev, "CUDA nvcc", files={f"{prefix}/bin/nvcc": (nvcc, 0o755)}
        ),
        Package(
            f"cuda-toolkit-{dashed}-config-common",
            rev,
            f"Common config package for CUDA Toolkit {short}.",
            postinst="".join(f"update-alternatives --install {alt}\n" for alt in alternatives),
            prerm=(
                'if [ "$1" = remove ] || [ "$1" = deconfigure ]; then\n'
                f"    update-alternatives --remove cuda {prefix}\n"
                f"    update-alternatives --remove cuda-{major} {prefix}\n"
                "fi\n"
            ),
            architecture="all",
        ),
        Package(
            f"cuda-cudart-{dashed}",
            rev,
            "CUDA Runtime native Libraries",
            depends=[f"cuda-toolkit-{dashed}-config-common"],
            files={
                f"{prefix}/version.json": (version_json, 0o644),
                f"{prefix}/lib64/libcudart.so.{major}": (
                    elf_shared_object_stub(f"libcudart.so.{major}"),
                    0o644,
                ),
            },
        ),
        Package(
            f"cuda-toolkit-{dashed}",
            rev,
            f"CUDA Toolkit {short} meta-package",
            depends=[f"cuda-nvcc-{dashed} (>= {rev})", f"cuda-cudart-{dashed} (>= {rev})"],
        ),
    ]


def elf_shared_object_stub(soname: str) -> bytes:
    """A minimal x86-64 ELF shared object that carries only a SONAME: enough for ldconfig to
    index it (so tests can check the linker configuration), never meant to be loaded."""
    dynstr = b"\0" + soname.encode() + b"\0"
    ehdr_size, phdr_size, phnum = 64, 56, 2
    strtab = ehdr_size + phdr_size * phnum
    symtab = (strtab + len(dynstr) + 7) & ~7
    dyn_off = symtab + 24  # one empty symbol
    entries = [(14, 1), (5, strtab), (10, len(dynstr)), (6, symtab), (11, 24), (0, 0)]
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in entries)
    size = dyn_off + len(dynamic)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)  # 64-bit, little endian, SysV
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, ehdr_size, 0, 0, ehdr_size, phdr_size, phnum, 64, 0, 0
    )  # ET_DYN, EM_X86_64, no entry point, program headers right after, no sections
    load = struct.pack("<IIQQQQQQ", 1, 4, 0, 0, 0, size, size, 0x1000)  # PT_LOAD, R
    dyn = struct.pack("<IIQQQQQQ", 2, 6, dyn_off, dyn_off, dyn_off, len(dynamic), len(dynamic), 8)
    body = header + load + dyn + dynstr
    return body + bytes(symtab - len(body)) + bytes(24) + dynamic


def cuda_runfile(release: str) -> tuple[str, bytes]:
    """NVIDIA's CUDA runfile for a release, simulated: (path under the download root, content).

    A shell script at the real name and path that takes the real installer's flags for a
    toolkit-only install (`--silent --toolkit --toolkitpath=<dir>`, `--tmpdir=<dir>`,
    `--no-opengl-libs --no-drm --no-man-page`, `--defaultroot`, `--override`) and installs into
    the toolkit path the same nvcc and version.json as the cuda-*-X-Y packages, plus lib64 with
    an ELF libcudart stub, logging to /var/log/cuda-installer.log. Where the real installer would
    turn interactive (no --silent) or install its bundled driver (--driver, or --silent without
    --toolkit) the simulation exits non-zero: the roles must never get there.

    Like the real installer it needs libxml2 (its cuda-installer binary links libxml2.so.2:
    "error while loading shared libraries: libxml2.so.2", conda-forge/cudatoolkit-dev-feedstock
    #78) and stops without gcc unless --override skips the compiler check (spack/spack#14758
    runs it with --override for that reason).
    """
    bundled_driver, cudart = {"12.4.1": ("550.54.15", "12.4.127")}[release]
    major, minor, _patch = release.split(".")
    short = f"{major}.{minor}"
    files = {}
    for pkg in cuda_toolkit_packages(release):
        files.update(pkg.files)
    prefix = f"/usr/local/cuda-{short}"
    nvcc = base64.encodebytes(files[f"{prefix}/bin/nvcc"][0]).decode()
    version_json = base64.encodebytes(files[f"{prefix}/version.json"][0]).decode()
    libcudart = base64.encodebytes(elf_shared_object_stub(f"libcudart.so.{major}")).decode()
    lib = f"targets/x86_64-linux/lib/libcudart.so.{cudart}"
    script = f"""#!/bin/sh
# CUDA {release} runfile, simulated by the llmops.gpu_serving test harness (the real one is a
# ~4 GB makeself archive with the same name). Toolkit-only installs; never a driver.
LOG=/var/log/cuda-installer.log
log() {{ echo "[$1]: $2" >> "$LOG"; }}
fail() {{ log ERROR "$1"; echo "$1" >&2; exit 1; }}
: > "$LOG" 2>/dev/null || {{ echo "cannot write $LOG: run as root" >&2; exit 1; }}
silent=0; toolkit=0; override=0; toolkitpath={prefix}
for arg in "$@"; do
  log INFO "Option: $arg"
  case "$arg" in
    --silent) silent=1 ;;
    --toolkit) toolkit=1 ;;
    --override) override=1 ;;
    --toolkitpath=*) toolkitpath="${{arg#--toolkitpath=}}" ;;
    --tmpdir=*) [ -d "${{arg#--tmpdir=}}" ] || fail "--tmpdir: no directory ${{arg#--tmpdir=}}" ;;
    --defaultroot=*|--no-opengl-libs|--no-drm|--no-man-page) ;;
    --driver|-m=kernel|-m=kernel-open) fail "Refusing to install the bundled driver \
{bundled_driver} (simulated runfile: roles must install the toolkit only)" ;;
    *) fail "Unknown option: $arg" ;;
  esac
done
if ! ls /usr/lib/*-linux-gnu/libxml2.so.2 /lib/*-linux-gnu/libxml2.so.2 >/dev/null 2>&1; then
  echo "./cuda-installer: error while loading shared libraries: libxml2.so.2: cannot open \
shared object file: No such file or directory" >&2
  exit 127
fi
if [ "$override" = 0 ] && ! command -v gcc >/dev/null 2>&1; then
  log ERROR "Missing gcc. gcc is required to continue."
  fail "Failed to verify gcc version. See log at $LOG for details."
fi
[ "$silent" = 1 ] || fail "Interactive installation needs a terminal; pass --silent"
[ "$toolkit" = 1 ] || fail "--silent without --toolkit would install the bundled driver \
{bundled_driver}; refusing (simulated runfile)"
case "$toolkitpath" in /*) ;; *) fail "--toolkitpath must be absolute: $toolkitpath" ;; esac
log INFO "Installing: CUDA Toolkit {short} into $toolkitpath"
umask 022
set -e
mkdir -p "$toolkitpath/bin" "$toolkitpath/targets/x86_64-linux/lib"
ln -sfn targets/x86_64-linux/lib "$toolkitpath/lib64"
base64 -d > "$toolkitpath/bin/nvcc" <<'PAYLOAD'
{nvcc}PAYLOAD
chmod 0755 "$toolkitpath/bin/nvcc"
base64 -d > "$toolkitpath/{lib}" <<'PAYLOAD'
{libcudart}PAYLOAD
ln -sfn libcudart.so.{cudart} "$toolkitpath/targets/x86_64-linux/lib/libcudart.so.{major}"
ln -sfn libcudart.so.{major} "$toolkitpath/targets/x86_64-linux/lib/libcudart.so"
base64 -d > "$toolkitpath/version.json" <<'PAYLOAD'
{version_json}PAYLOAD
log INFO "Driver:   Not Selected"
log INFO "Toolkit:  Installed in $toolkitpath/"
"""
    path = f"compute/cuda/{release}/local_installers/cuda_{release}_{bundled_driver}_linux.run"
    return path, script.encode()


def cuda_keyring_package(public_key_binary: bytes) -> Package:
    return Package(
        "cuda-keyring",
        "1.1-1",
        "GPG keyring for the CUDA repository",
        files={"/usr/share/keyrings/cuda-archive-keyring.gpg": (public_key_binary, 0o644)},
        architecture="all",
    )


# --- NVIDIA driver local repository (air-gapped hosts) ------------------------------------------

LOCAL_REPO_DRIVER_VERSION = "550.144.03"


def write_driver_local_repos(staging: Path, gpg_home: Path, workdir: Path) -> dict[str, str]:
    """NVIDIA's nvidia-driver-local-repo-<distro>-<version>_1.0-1_amd64.deb for each CUDA repo
    distro, where NVIDIA publishes them (compute/nvidia-driver/<version>/local_installers/).

    Like NVIDIA's, the package holds a flat repository signed by a key of its own under
    /var/nvidia-driver-local-repo-<distro>-<version>/ (the driver family of that one version
    and the key as nvidia-driver-local-<keyid>-keyring.gpg, which the operator copies to
    /usr/share/keyrings/) and a source list that names that keyring. Returns the SHA-256 of each
    package by distro, which the roles must be given.
    """
    signer = Signer(gpg_home, "Simulated NVIDIA driver local repo", "driver-local@llmops.invalid")
    version = LOCAL_REPO_DRIVER_VERSION
    keyring = f"nvidia-driver-local-{signer.fingerprint[-8:].lower()}-keyring.gpg"
    out_dir = staging / "compute" / "nvidia-driver" / version / "local_installers"
    checksums = {}
    for distro, spec in CUDA_REPOS.items():
        name = f"nvidia-driver-local-repo-{distro}-{version}"
        repo = workdir / distro / "repo"
        write_flat_repo(
            repo,
            driver_packages(spec["family"], version),
            signer,
            workdir / distro / "build",
            origin="NVIDIA",
            label="NVIDIA driver local repository",
        )
        files = {
            f"/var/{name}/{path.name}": (path.read_bytes(), 0o644)
            for path in sorted(repo.iterdir())
            if path.is_file()
        }
        files[f"/var/{name}/{keyring}"] = (signer.export(armor=False), 0o644)
        source_list = f"/etc/apt/sources.list.d/nvidia-driver-local-{distro}-{version}.list"
        files[source_list] = (
            f"deb [signed-by=/usr/share/keyrings/{keyring}] file:///var/{name} /\n".encode(),
            0o644,
        )
        pkg = Package(
            name,
            "1.0-1",
            f"nvidia-driver-local repository configuration files for {version}",
            files=files,
            conffiles=[source_list],
        )
        checksums[distro] = hashlib.sha256(
            build_deb(pkg, out_dir, workdir / distro).read_bytes()
        ).hexdigest()
    return checksums


# --- NVIDIA Container Toolkit -------------------------------------------------------------------


def nct_packages(version: str) -> list[Package]:
    upstream = version.rsplit("-", 1)[0]
    runtime = text(
        """
        #!/bin/sh
        # Stand-in for nvidia-container-runtime (llmops.gpu_serving test harness). The real one
        # injects GPUs through a prestart hook, then runs runc; with no GPU to inject, this one
        # runs runc directly so `docker run --runtime nvidia` really runs the container.
        if [ "$1" = "--version" ]; then
            echo "NVIDIA Container Runtime version @VERSION@ (simulated)"
            exec runc --version
        fi
        exec runc "$@"
        """
    ).replace(b"@VERSION@", upstream.encode())
    # nvidia-ctk: --version, `runtime configure --runtime=docker` and `system
    # create-dev-char-symlinks` as NVIDIA's 1.17.8 does them (sources in the payload's docstring).
    ctk = payload("nvidia-ctk").replace(b"@VERSION@", upstream.encode())
    cli = text(
        """
        #!/bin/sh
        # Stand-in for nvidia-container-cli (llmops.gpu_serving test harness): version only.
        case "$1" in
          --version|-V) echo "cli-version: @VERSION@"; echo "lib-version: @VERSION@" ;;
          *) echo "nvidia-container-cli: simulated, no GPU to inject" >&2; exit 1 ;;
        esac
        """
    ).replace(b"@VERSION@", upstream.encode())
    config = text(
        """
        # /etc/nvidia-container-runtime/config.toml (simulated package)
        [nvidia-container-runtime]
        mode = "auto"
        runtimes = ["docker-runc", "runc", "crun"]
        """
    )
    exact = f"(= {version})"
    return [
        Package(
            "libnvidia-container1", version, "NVIDIA container runtime library", section="utils"
        ),
        Package(
            "libnvidia-container-tools",
            version,
            "NVIDIA container runtime library (tools)",
            depends=[f"libnvidia-container1 (>= {version})"],
            files={"/usr/bin/nvidia-container-cli": (cli, 0o755)},
            section="utils",
        ),
        Package(
            "nvidia-container-toolkit-base",
            version,
            "NVIDIA Container Toolkit Base",
            files={
                "/usr/bin/nvidia-ctk": (ctk, 0o755),
                "/usr/bin/nvidia-container-runtime": (runtime, 0o755),
                "/etc/nvidia-container-runtime/config.toml": (config, 0o644),
            },
            conffiles=["/etc/nvidia-container-runtime/config.toml"],
            section="utils",
        ),
        Package(
            "nvidia-container-toolkit",
            version,
            "NVIDIA Container toolkit",
            depends=[
                f"nvidia-container-toolkit-base {exact}",
                f"libnvidia-container-tools (>= {version})",
                "libnvidia-container-tools (<< 2.0.0)",
            ],
            files={"/usr/bin/nvidia-container-runtime-hook": (NCT_HOOK, 0o755)},
            section="utils",
        ),
    ]


# Docker's `--gpus` looks this binary up on PATH and runs it as the container's prestart hook
# (moby daemon/nvidia_linux.go); without it dockerd answers `could not select device driver ""
# with capabilities: [[gpu]]`. The real hook injects the GPUs; with none to inject, this one
# reads the OCI state runc passes on stdin, notes the request and lets the container start.
NCT_HOOK = text(
    """
    #!/bin/sh
    # nvidia-container-runtime-hook (simulated for llmops.gpu_serving tests)
    case "$1" in
      prestart)
        cat >/dev/null
        mkdir -p /run/nvidia-sim && echo "prestart $(date +%s)" >>/run/nvidia-sim/hook.log
        exit 0 ;;
      poststart|poststop) cat >/dev/null; exit 0 ;;
      *) echo "nvidia-container-runtime-hook: simulated; hooks: prestart" ; exit 0 ;;
    esac
    """
)


# --- Docker CE -----------------------------------------------------------------------------------


def docker_packages(suffix: str, codename: str, cli_repackaged: bool) -> list[Package]:
    """containerd.io, the CLI plugins and, where docker.io carries the CLI, empty docker-ce-cli
    stand-ins.

    docker-ce itself is repackaged (below), and so is docker-ce-cli where Debian ships the CLI
    as a package of its own (docker-cli, Debian 13).
    """
    pkgs = [
        Package(
            "containerd.io",
            containerd_version,
            "An open and reliable container runtime\n"
            "Stand-in: depends on the distribution's containerd and runc.",
            depends=["containerd", "runc"],
            section="devel",
        )
        for containerd_version in CONTAINERD_IO_VERSIONS
    ]
    for name, versions in DOCKER_PLUGIN_VERSIONS.items():
        for upstream in versions:
            pkgs.append(docker_cli_plugin(name, f"{upstream}-1~{suffix}~{codename}", upstream))
    for upstream in DOCKER_VERSIONS if not cli_repackaged else ():
        version = f"5:{upstream}-1~{suffix}~{codename}"
        pkgs.append(
            Package(
                "docker-ce-cli",
                version,
                "Docker CLI: the open-source application container engine\n"
                "Stand-in: the CLI ships inside the simulated docker-ce (Debian's docker.io).",
                section="admin",
            )
        )
    return pkgs


def docker_cli_plugin(name: str, version: str, upstream: str) -> Package:
    """A Docker CLI plugin stand-in at Docker's path, answering the CLI's plugin protocol.

    The docker CLI runs `<plugin> docker-cli-plugin-metadata` on the executables in
    /usr/libexec/docker/cli-plugins and then `<plugin> <command> ...` (docker/cli
    cli-plugins/manager), so `docker compose version` and `docker buildx version` work through
    Debian's real CLI and report the package's version.
    """
    command = name.removeprefix("docker-").removesuffix("-plugin")
    answers = {
        "compose": ("Docker Compose", f"Docker Compose version v{upstream}"),
        "buildx": ("Docker Buildx", f"github.com/docker/buildx v{upstream} llmops-simulated"),
    }
    description, version_line = answers[command]
    metadata = json.dumps(
        {
            "SchemaVersion": "0.1.0",
            "Vendor": "Docker Inc.",
            "Version": f"v{upstream}",
            "ShortDescription": description,
        },
        separators=(",", ":"),
    )
    script = (
        text(
            """
            #!/bin/sh
            # docker-@CMD@ CLI plugin (simulated for llmops.gpu_serving tests): metadata, version.
            case "$1" in
              docker-cli-plugin-metadata) echo '@METADATA@' ;;
              @CMD@)
                if [ "$2" = version ]; then echo "@VERSION_LINE@"; exit 0; fi
                echo "docker @CMD@ (simulated): only 'version' is available" >&2; exit 1 ;;
              *) echo "docker-@CMD@ (simulated): run it as 'docker @CMD@'" >&2; exit 1 ;;
            esac
            """
        )
        .replace(b"@CMD@", command.encode())
        .replace(b"@METADATA@", metadata.encode())
        .replace(b"@VERSION_LINE@", version_line.encode())
    )
    return Package(
        name,
        version,
        f"{description} (Docker CLI plugin)\nStand-in: answers the plugin metadata and version.",
        files={f"/usr/libexec/docker/cli-plugins/docker-{command}": (script, 0o755)},
        section="admin",
    )


def debian_docker_io(release: str, cache: Path) -> Path:
    """Debian's own docker.io .deb for a release, taken from the local Debian mirror's cache."""
    debs = sorted(debian_mirror_debs(release, cache).glob("docker.io_*.deb"))
    if not debs:
        sys.exit(f"vendor_repo: Debian {release}'s docker.io is not in the mirror cache")
    return debs[-1]


def debian_docker_cli(release: str, cache: Path) -> Path | None:
    """Debian's docker-cli .deb where the release splits the CLI out of docker.io, else None."""
    debs = sorted(debian_mirror_debs(release, cache).glob("docker-cli_*.deb"))
    return debs[-1] if debs else None


def repackage_docker_ce(docker_io: Path, version: str, pool: Path, workdir: Path) -> None:
    """Debian's real engine under Docker's package name and version.

    Debian's docker.io declares `Conflicts: docker-ce, docker-ce-cli`, so no docker-ce can sit
    beside it: the simulated docker-ce carries docker.io's files, scripts and dependencies,
    renamed, and conflicts with docker.io as the real docker-ce does. `docker version` reports
    Debian's engine version; the package version is Docker's.
    """
    repackage_debian_docker(
        docker_io,
        "docker-ce",
        version,
        {
            "Depends": f", docker-ce-cli (= {version}), containerd.io (>= 1.6.24)",
            "Conflicts": "docker.io, docker-engine, docker-engine-cs",
            "Replaces": "docker.io, docker-engine, docker-engine-cs",
            "Description": (
                "Docker: the open-source application container engine (simulated for tests)\n"
                " Debian's docker.io repackaged by the llmops.gpu_serving test harness under"
                " Docker CE's\n package name and version."
            ),
        },
        pool=pool,
        workdir=workdir,
    )


def repackage_docker_ce_cli(docker_cli: Path, version: str, pool: Path, workdir: Path) -> None:
    """Debian's real CLI (docker-cli, Debian 13 and later) as Docker's docker-ce-cli.

    Debian 13's docker.io holds only the engine; its CLI is docker-cli, a mere Recommends that
    declares `Conflicts: docker-ce-cli`. Without this the simulated docker-ce would have no
    `docker` command, unlike the real one.
    """
    repackage_debian_docker(
        docker_cli,
        "docker-ce-cli",
        version,
        {
            "Conflicts": "docker-cli, docker.io, docker-engine, docker-engine-cs",
            "Replaces": "docker-cli, docker.io, docker-engine, docker-engine-cs",
            "Description": (
                "Docker CLI: the open-source application container engine (simulated for tests)\n"
                " Debian's docker-cli repackaged by the llmops.gpu_serving test harness under"
                " Docker CE's\n package name and version."
            ),
        },
        pool=pool,
        workdir=workdir,
    )


def repackage_debian_docker(
    source: Path, name: str, version: str, changes: dict[str, str], *, pool: Path, workdir: Path
) -> None:
    """Rebuild a Debian .deb as `name` at `version`; a change starting with ", " is appended."""
    root = workdir / f"{name}-{version.replace(':', '_')}"
    root.parent.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-R", str(source), str(root)])
    control_path = root / "DEBIAN" / "control"
    fields: dict[str, str] = {}
    key = ""
    for line in control_path.read_text().splitlines():
        if line.startswith((" ", "\t")) and key:
            fields[key] += "\n" + line
        else:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    fields["Package"] = name
    fields["Version"] = version
    fields.pop("Breaks", None)
    fields.pop("Built-Using", None)
    fields.pop("Source", None)
    for field_name, value in changes.items():
        if value.startswith(", "):
            fields[field_name] = fields.get(field_name, "") + value
        else:
            fields[field_name] = value
    control_path.write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    pool.mkdir(parents=True, exist_ok=True)
    upstream = version.split(":", 1)[-1]
    run(
        # Fast compression: the engine's binaries are large and only ever read locally.
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root),
         str(pool / f"{name}_{upstream}_amd64.deb")],
        stdout=subprocess.DEVNULL,
        env=REPRODUCIBLE_ENV,
    )  # fmt: skip
    shutil.rmtree(root)


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


# --- repository assembly -------------------------------------------------------------------------


class Signer:
    """A throwaway GPG key per repository, generated for the harness, not NVIDIA's or Docker's.

    The key is kept in its home directory (under tests/output/cache) and used again by the next
    build: test hosts that trusted it while a rebuild swapped the repositories under them keep
    verifying them, and vendor-vars.yml keeps its fingerprints.
    """

    def __init__(self, home: Path, name: str, email: str):
        self.home = home
        home.mkdir(parents=True, mode=0o700, exist_ok=True)
        self.env = {**os.environ, "GNUPGHOME": str(home)}
        if not self._fingerprint():
            self._generate(name, email)
        fingerprint = self._fingerprint()
        if fingerprint is None:
            sys.exit(f"vendor_repo: gpg made no key in {home}")
        self.fingerprint = fingerprint

    def _generate(self, name: str, email: str) -> None:
        run(
            [
                "gpg",
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                f"{name} <{email}>",
                "rsa3072",
                "sign",
                "never",
            ],
            env=self.env,
            stderr=subprocess.DEVNULL,
        )

    def _fingerprint(self) -> str | None:
        listing = run(
            ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
            env=self.env,
            capture_output=True,
            text=True,
        ).stdout
        return next(
            (line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")), None
        )

    def export(self, armor: bool) -> bytes:
        cmd = ["gpg", "--batch", "--export"] + (["--armor"] if armor else []) + [self.fingerprint]
        return run(cmd, env=self.env, capture_output=True).stdout

    def sign_release(self, directory: Path) -> None:
        base = [
            "gpg",
            "--batch",
            "--yes",
            "--local-user",
            self.fingerprint,
            "--digest-algo",
            "SHA512",
        ]
        release = str(directory / "Release")
        run([*base, "--clearsign", "-o", str(directory / "InRelease"), release], env=self.env)
        run([*base, "--armor", "--detach-sign", "-o", f"{release}.gpg", release], env=self.env)


def write_packages_index(index_dir: Path, cwd: Path, scan: str) -> None:
    """Packages(.gz) in index_dir for the .debs under cwd/scan, paths as apt sees them."""
    index_dir.mkdir(parents=True, exist_ok=True)
    listing = run(["apt-ftparchive", "packages", scan], cwd=cwd, capture_output=True, text=True)
    (index_dir / "Packages").write_text(listing.stdout)
    run(["gzip", "-kf9n", "Packages"], cwd=index_dir)


def write_signed_release(directory: Path, signer: Signer, fields: dict[str, str]) -> None:
    """Release with these fields, InRelease and Release.gpg for the indexes below directory."""
    options = [arg for key, value in fields.items()
               for arg in ("-o", f"APT::FTPArchive::Release::{key}={value}")]  # fmt: skip
    release = run(["apt-ftparchive", *options, "release", "."], cwd=directory,
                  capture_output=True, text=True)  # fmt: skip
    (directory / "Release").write_text(release.stdout)
    signer.sign_release(directory)


def write_flat_repo(
    directory: Path,
    packages: list[Package],
    signer: Signer,
    workdir: Path,
    *,
    origin: str,
    label: str,
) -> None:
    for pkg in packages:
        build_deb(pkg, directory, workdir)
    write_packages_index(directory, directory, ".")
    write_signed_release(
        directory, signer, {"Origin": origin, "Label": label, "Architectures": "amd64 all"}
    )


def write_dists_repo(
    base: Path, codename: str, packages: list[Package], signer: Signer, workdir: Path
) -> None:
    pool = base / "pool" / codename / "stable"
    for pkg in packages:
        build_deb(pkg, pool, workdir)
    dist = base / "dists" / codename
    write_packages_index(dist / "stable" / "binary-amd64", base, f"pool/{codename}")
    write_signed_release(
        dist,
        signer,
        {
            "Origin": "Docker",
            "Label": "Docker CE",
            "Suite": codename,
            "Codename": codename,
            "Architectures": "amd64",
            "Components": "stable",
        },
    )


def build(out: Path, mount_point: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="llmops-vendor-") as tmp:
        tmpdir = Path(tmp)
        staging = tmpdir / "repo"
        work = tmpdir / "build"
        keys = out.parent / "cache" / "gpg"
        signers = {
            "cuda": Signer(keys / "cuda", "Simulated NVIDIA CUDA repo", "cudatools@llmops.invalid"),
            "nct": Signer(
                keys / "nct", "Simulated NVIDIA container toolkit repo", "nct@llmops.invalid"
            ),
            "docker": Signer(
                keys / "docker", "Simulated Docker Release (CE deb)", "docker@llmops.invalid"
            ),
            "distro": Signer(keys / "distro", "Simulated distro extras", "distro@llmops.invalid"),
            "cuda-debian13": Signer(
                keys / "cuda-debian13",
                "Simulated NVIDIA CUDA repo (debian13 key)",
                "cudatools-debian13@llmops.invalid",
            ),
        }

        cuda_base = staging / "compute" / "cuda" / "repos"
        for distro, spec in CUDA_REPOS.items():
            signer_name, key_file = CUDA_OWN_KEYS.get(distro, ("cuda", CUDA_COMMON_KEY_FILE))
            signer = signers[signer_name]
            pkgs = [cuda_keyring_package(signer.export(armor=False))]
            if spec["drivers"]:
                for version in DRIVER_VERSIONS:
                    pkgs += driver_packages(spec["family"], version)
            for release in spec["toolkits"]:
                pkgs += cuda_toolkit_packages(release)
            directory = cuda_base / distro / "x86_64"
            write_flat_repo(
                directory,
                pkgs,
                signer,
                work / distro,
                origin="NVIDIA",
                label="NVIDIA CUDA",
            )
            # Same file name as NVIDIA's key (3bf863cc.pub, 8793F200.pub), simulated key inside:
            # the roles find it where they would on a real host and must be given its fingerprint.
            (directory / key_file).write_bytes(signer.export(armor=True))
        driver_local_sha256 = write_driver_local_repos(
            staging, keys / "driver-local", work / "driver-local"
        )
        runfile_path, runfile = cuda_runfile("12.4.1")
        (staging / runfile_path).parent.mkdir(parents=True)
        (staging / runfile_path).write_bytes(runfile)

        nct_dir = staging / "libnvidia-container" / "stable" / "deb" / "amd64"
        nct_pkgs = [pkg for version in NCT_VERSIONS for pkg in nct_packages(version)]
        write_flat_repo(
            nct_dir,
            nct_pkgs,
            signers["nct"],
            work / "nct",
            origin="https://nvidia.github.io/libnvidia-container/stable/deb",
            label="https://nvidia.github.io/libnvidia-container",
        )
        (staging / "libnvidia-container" / "gpgkey").write_bytes(signers["nct"].export(armor=True))

        for distro, codenames in DOCKER_DISTS.items():
            base = staging / "docker" / "linux" / distro
            for codename, (suffix, release) in codenames.items():
                docker_io = debian_docker_io(release, out.parent / "cache")
                docker_cli = debian_docker_cli(release, out.parent / "cache")
                for upstream in DOCKER_VERSIONS:
                    repackage_docker_ce(
                        docker_io,
                        f"5:{upstream}-1~{suffix}~{codename}",
                        base / "pool" / codename / "stable",
                        work / f"docker-ce-{codename}",
                    )
                    if docker_cli is not None:
                        repackage_docker_ce_cli(
                            docker_cli,
                            f"5:{upstream}-1~{suffix}~{codename}",
                            base / "pool" / codename / "stable",
                            work / f"docker-ce-cli-{codename}",
                        )
                write_dists_repo(
                    base,
                    codename,
                    docker_packages(suffix, codename, cli_repackaged=docker_cli is not None),
                    signers["docker"],
                    work / f"docker-{codename}",
                )
            (base / "gpg").write_bytes(signers["docker"].export(armor=True))

        distro_dir = staging / "distro-extras"
        write_flat_repo(
            distro_dir,
            [kernel_headers_package(), kernel_headers_meta_package()],
            signers["distro"],
            work / "distro",
            origin="llmops-harness",
            label="Simulated distro extras",
        )
        (distro_dir / "gpgkey").write_bytes(signers["distro"].export(armor=True))
        mirror_suites = {codename: release for release, codename in DEBIAN_MIRROR_SUITES.items()}
        mirror_suites.update(UBUNTU_FACTS_MIRROR_SUITES)
        for codename, release in mirror_suites.items():
            write_debian_mirror(
                staging / "debian" / codename,
                debian_mirror_debs(release, out.parent / "cache"),
                signers["distro"],
                codename,
            )

        url = f"file://{mount_point}"
        variables = {
            "# generated by": "tests/harness/vendor_repo.py; do not edit",
            "vendor_repo_root": url,
            "vendor_repo_cuda_base_url": f"{url}/compute/cuda/repos",
            "vendor_repo_cuda_key_fingerprint": signers["cuda"].fingerprint,
            "vendor_repo_cuda_debian13_key_url": (
                f"{url}/compute/cuda/repos/debian13/x86_64/{CUDA_DEBIAN13_KEY_FILE}"
            ),
            "vendor_repo_cuda_debian13_key_fingerprint": signers["cuda-debian13"].fingerprint,
            "vendor_repo_driver_local_repo_base_url": f"{url}/compute/nvidia-driver",
            "vendor_repo_driver_local_repo_sha256": driver_local_sha256,
            "vendor_repo_cuda_runfile_url": f"{url}/{runfile_path}",
            "vendor_repo_cuda_runfile_sha256": hashlib.sha256(runfile).hexdigest(),
            "vendor_repo_nct_url": f"{url}/libnvidia-container/stable/deb",
            "vendor_repo_nct_key_url": f"{url}/libnvidia-container/gpgkey",
            "vendor_repo_nct_key_fingerprint": signers["nct"].fingerprint,
            "vendor_repo_docker_base_url": f"{url}/docker/linux",
            "vendor_repo_docker_key_fingerprint": signers["docker"].fingerprint,
            "vendor_repo_distro_extras_url": f"{url}/distro-extras",
            "vendor_repo_distro_extras_key_url": f"{url}/distro-extras/gpgkey",
            "vendor_repo_distro_extras_key_fingerprint": signers["distro"].fingerprint,
            "vendor_repo_debian_mirror_url": f"{url}/debian",
            # The harness's output on the controller (image archives, models): for variables
            # that name controller-side files, such as vllm_server_image_archive.
            "vendor_repo_harness_output_dir": str(out.parent.resolve()),
            "vendor_repo_kernel_headers_package": f"linux-headers-{platform.release()}",
            "vendor_repo_kernel_headers_meta_package": KERNEL_HEADERS_META,
        }
        tmp_out = out.with_name(out.name + ".new")
        shutil.rmtree(tmp_out, ignore_errors=True)
        shutil.copytree(staging, tmp_out)
        write_vars(tmp_out / "vendor-vars.yml", variables)
        (tmp_out / "vendor-vars.json").write_text(json.dumps(variables, indent=2) + "\n")
        replace_contents(out, tmp_out)
        return variables


def replace_contents(out: Path, staged: Path) -> None:
    """Swap in the new build while keeping `out` itself: running test hosts bind-mount it, and a
    replaced directory would leave them looking at the deleted one."""
    out.mkdir(parents=True, exist_ok=True)
    trash = out.with_name(out.name + ".old")
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir()
    # Each entry is swapped by two renames, old out and new in, so that a test host reading the
    # repositories during a rebuild misses them only between the two (no copy in between).
    new_names = {child.name for child in staged.iterdir()}
    for child in list(out.iterdir()):
        if child.name not in new_names:
            child.rename(trash / child.name)
    for child in staged.iterdir():
        target = out / child.name
        if target.exists() or target.is_symlink():
            target.rename(trash / child.name)
        child.rename(target)
    staged.rmdir()
    shutil.rmtree(trash)


def write_vars(path: Path, variables: dict) -> None:
    lines = ["---"]
    for key, value in variables.items():
        if key.startswith("#"):
            lines.append(f"{key}: {value}")
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE.parent / "output" / "vendor-repo",
        help="where to write the repositories (default: %(default)s)",
    )
    parser.add_argument(
        "--mount-point",
        default="/srv/vendor-repo",
        help="where test hosts see the output directory (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args()

    for tool in ("dpkg-deb", "apt-ftparchive", "gpg", "gzip"):
        if shutil.which(tool) is None:
            hint = " (Debian package apt-utils)" if tool == "apt-ftparchive" else ""
            sys.exit(f"vendor_repo: '{tool}' is required{hint}")

    # The Debian mirror subset is resolved against the test images: a rebuilt image rebuilds it.
    images = " ".join(image_id(release)[7:19] for release in DEBIAN_MIRROR_SUITES)
    stamp_value = f"{recipe_hash()} {args.mount_point} {images}"
    stamp = args.out / ".recipe"
    if not args.force and stamp.is_file() and stamp.read_text().strip() == stamp_value:
        print(f"[vendor-repo] {args.out} is up to date", file=sys.stderr)
        return 0
    variables = build(args.out, args.mount_point)
    stamp.write_text(stamp_value + "\n")
    print(f"[vendor-repo] built {args.out}", file=sys.stderr)
    for key in (
        "vendor_repo_cuda_key_fingerprint",
        "vendor_repo_nct_key_fingerprint",
        "vendor_repo_docker_key_fingerprint",
    ):
        print(f"[vendor-repo]   {key} = {variables[key]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
