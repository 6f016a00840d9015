"""NVIDIA's CUDA network repositories: the directories and their keys, the toolkit packages,
the runfile and the keyring package."""

from __future__ import annotations

import base64
import json
import struct

from .debs import (
    Package,
    text,
)

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

NVCC_BUILDS = {
    # release -> (V string, build date line, build id), as `nvcc --version` prints them
    "12.4.1": ("V12.4.131", "Thu_Mar_28_02:18:24_PDT_2024", "cuda_12.4.r12.4/compiler.34097967_0"),
    "12.5.1": ("V12.5.82", "Thu_Jun__6_02:18:23_PDT_2024", "cuda_12.5.r12.5/compiler.34385749_0"),
    "12.6.3": ("V12.6.85", "Thu_Nov_14_01:23:24_PST_2024", "cuda_12.6.r12.6/compiler.35059454_0"),
}


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
