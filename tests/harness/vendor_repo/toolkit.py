"""The NVIDIA Container Toolkit repository's packages."""

from __future__ import annotations

from .debs import (
    Package,
    payload,
    text,
)

NCT_VERSIONS = ("1.17.7-1", "1.17.8-1", "1.18.0-1")


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
