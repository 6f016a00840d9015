"""The whole build: every repository into one output tree, vendor-vars.yml and the recipe stamp."""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from . import __doc__ as package_doc
from .cuda import (
    CUDA_COMMON_KEY_FILE,
    CUDA_DEBIAN13_KEY_FILE,
    CUDA_OWN_KEYS,
    CUDA_REPOS,
    cuda_keyring_package,
    cuda_runfile,
    cuda_toolkit_packages,
)
from .debs import (
    HERE,
    PAYLOADS,
    PROFILES,
)
from .distro import (
    DEBIAN_MIRROR_SUITES,
    KERNEL_HEADERS_META,
    UBUNTU_FACTS_MIRROR_SUITES,
    debian_mirror_debs,
    image_id,
    kernel_headers_meta_package,
    kernel_headers_package,
    write_debian_mirror,
)
from .docker import (
    DOCKER_DISTS,
    DOCKER_VERSIONS,
    debian_docker_cli,
    debian_docker_io,
    docker_packages,
    repackage_docker_ce,
    repackage_docker_ce_cli,
)
from .driver import (
    DRIVER_VERSIONS,
    driver_packages,
    write_driver_local_repos,
)
from .signing import (
    Signer,
    write_dists_repo,
    write_flat_repo,
)
from .toolkit import NCT_VERSIONS, nct_packages


def recipe_hash() -> str:
    digest = hashlib.sha256()
    sources = [HERE / "vendor_repo.py", *Path(__file__).parent.glob("*.py")]
    for path in sorted([*sources, *PAYLOADS.rglob("*"), *PROFILES.rglob("*")]):
        if path.is_file():
            digest.update(str(path.relative_to(HERE.parent)).encode())
            digest.update(path.read_bytes())
    digest.update(platform.release().encode())
    return digest.hexdigest()[:16]


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
    parser = argparse.ArgumentParser(description=package_doc.split("\n\n")[0])
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
