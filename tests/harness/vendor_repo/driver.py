"""The NVIDIA driver family of the CUDA repositories, Fabric Manager, and NVIDIA's driver local
repository packages for air-gapped hosts."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .cuda import (
    CUDA_REPOS,
)
from .debs import (
    DEFAULT_PROFILE,
    PROFILES,
    Package,
    build_deb,
    payload,
    text,
)
from .signing import (
    Signer,
    write_flat_repo,
)

DRIVER_VERSIONS = ("550.127.05", "550.144.03", "550.163.01")

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
