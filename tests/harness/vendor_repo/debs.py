"""Debian packages of the simulation: the package model and how a .deb is built, reproducibly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

# tests/harness, the package's parent: the fixtures and the output are found from it.
HERE = Path(__file__).resolve().parent.parent
FIXTURES = HERE.parent / "fixtures" / "vendor_repo"
PAYLOADS = FIXTURES / "payloads"
PROFILES = FIXTURES / "profiles"
DEFAULT_PROFILE = "seed-4x-rtx2080ti-22g.json"


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
