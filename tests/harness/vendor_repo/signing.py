"""Signed apt repositories: the throwaway keys, and the indexes and Release files they sign."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .debs import (
    Package,
    build_deb,
    run,
)


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
