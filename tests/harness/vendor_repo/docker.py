"""Docker CE's repository: docker-ce and docker-ce-cli repackaged from Debian's docker.io and
docker-cli, containerd.io and the CLI plugins."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .debs import (
    REPRODUCIBLE_ENV,
    Package,
    run,
    text,
)
from .distro import (
    debian_mirror_debs,
)

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

# Docker's suites: codename -> (the version's distribution part, the Debian release whose
# docker.io is repackaged as docker-ce; see repackage_docker_ce). Ubuntu's archive cannot be
# fetched here, so the noble suite repackages Debian 13's docker.io: the Ubuntu 24.04 test
# platform (tests/harness/build-ubuntu-facts-image.sh) has Debian 13's userland. Its versions
# are Docker's for noble, 5:27.5.1-1~ubuntu.24.04~noble (facts, "Docker").
DOCKER_DISTS = {
    "debian": {"bookworm": ("debian.12", "12"), "trixie": ("debian.13", "13")},
    "ubuntu": {"noble": ("ubuntu.24.04", "13")},
}


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
