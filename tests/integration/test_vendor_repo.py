"""The simulated vendor repositories behave like NVIDIA's and Docker's where the roles care.

Each test host is a systemd container from the harness image with the repositories mounted
read-only at /srv/vendor-repo, exactly as molecule scenarios and the sandbox see them. These
tests install by hand, as an operator would, what the roles will automate: if the simulation
drifts from the facts in ../shared/facts/nvidia-stack.md, these fail before any role test does.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO_ROOT = Path(__file__).resolve().parents[2]
VENDOR_REPO = REPO_ROOT / "tests" / "output" / "vendor-repo"
SYSTEMD_FLAGS = [
    "--cap-add", "SYS_ADMIN",
    "--cgroupns", "host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
]  # fmt: skip
# cuda_key: the key file of the release's CUDA directory and the vendor-vars.json entry of its
# fingerprint. NVIDIA's debian13 directory has no 550 branch and a key of its own (facts/
# nvidia-stack.md; NVIDIA/cuda-repo-management#38, #39), and so has the simulated one: the
# Debian 13 host takes the driver from ubuntu2404 (driver_repo), the Ubuntu 24.04 test platform's
# combination (Debian 13's userland with NVIDIA's ubuntu2404 packages).
COMMON_KEY = ("3bf863cc.pub", "vendor_repo_cuda_key_fingerprint")
RELEASES = {
    "12": {
        "codename": "bookworm",
        "cuda_repo": "debian12",
        "cuda_key": COMMON_KEY,
        "driver_repo": "debian12",
        "cuda_12_4": True,
    },
    "13": {
        "codename": "trixie",
        "cuda_repo": "debian13",
        "cuda_key": ("8793F200.pub", "vendor_repo_cuda_debian13_key_fingerprint"),
        "driver_repo": "ubuntu2404",
        "cuda_12_4": False,
    },
}
CUDA_REPOS = "/srv/vendor-repo/compute/cuda/repos"


def docker(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


class Host:
    def __init__(self, name: str):
        self.name = name

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        result = docker("exec", self.name, "bash", "-ec", script, check=False)
        if check and result.returncode != 0:
            pytest.fail(
                f"`{script}` exited {result.returncode}\nstdout:\n{result.stdout}\n"
                f"stderr:\n{result.stderr}"
            )
        return result

    def wait_booted(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running || true").stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        pytest.fail(f"{self.name}: systemd did not finish booting (state {state!r})")

    def reboot(self) -> None:
        docker("restart", "-t", "5", self.name)
        self.wait_booted()


@pytest.fixture(scope="module")
def vendor_vars() -> dict:
    path = VENDOR_REPO / "vendor-vars.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make harness` first")
    return json.loads(path.read_text())


@pytest.fixture(scope="module", params=sorted(RELEASES))
def host(request, vendor_vars):
    release = request.param
    image = f"llmops-test/debian:{release}"
    if docker("image", "inspect", image, check=False).returncode != 0:
        pytest.fail(f"image {image} is missing: run `make harness` first")
    name = f"llmops-vendor-test-{release}-{uuid.uuid4().hex[:6]}"
    docker(
        "run", "-d", "--name", name, *SYSTEMD_FLAGS,
        "-v", f"{VENDOR_REPO}:/srv/vendor-repo:ro", image,
    )  # fmt: skip
    box = Host(name)
    box.release = RELEASES[release]
    try:
        box.wait_booted()
        cfg = box.release
        keys = {
            "cuda": f"{CUDA_REPOS}/{cfg['cuda_repo']}/x86_64/{cfg['cuda_key'][0]}",
            "nct": "/srv/vendor-repo/libnvidia-container/gpgkey",
            "docker": "/srv/vendor-repo/docker/linux/debian/gpg",
            "extras": "/srv/vendor-repo/distro-extras/gpgkey",
        }
        sources = {
            "cuda": f"file:{CUDA_REPOS}/{cfg['cuda_repo']}/x86_64 /",
            "nct": "file:/srv/vendor-repo/libnvidia-container/stable/deb/amd64 /",
            "docker": f"file:/srv/vendor-repo/docker/linux/debian {cfg['codename']} stable",
            "extras": "file:/srv/vendor-repo/distro-extras /",
            "debian": f"file:/srv/vendor-repo/debian/{cfg['codename']} /",
        }
        if cfg["driver_repo"] != cfg["cuda_repo"]:
            keys["cuda-driver"] = f"{CUDA_REPOS}/{cfg['driver_repo']}/x86_64/{COMMON_KEY[0]}"
            sources["cuda-driver"] = f"file:{CUDA_REPOS}/{cfg['driver_repo']}/x86_64 /"
        script = []
        # The Debian mirror subset is signed with the distro extras key.
        keys["debian"] = keys["extras"]
        for key, path in keys.items():
            keyring = f"/usr/share/keyrings/sim-{key}.gpg"
            script.append(f"gpg --dearmor < {path} > {keyring}")
            script.append(
                f"echo 'deb [signed-by={keyring}] {sources[key]}' > "
                f"/etc/apt/sources.list.d/sim-{key}.list"
            )
        # Only the harness's repositories: the tests must not depend on Debian's servers.
        script.append("mv /etc/apt/sources.list /etc/apt/sources.list.debian")
        script.append("apt-get update -qq")
        box.sh("\n".join(script))
        yield box
    finally:
        docker("rm", "-f", "-v", name, check=False)


def fingerprint_of(host: Host, path: str) -> str:
    out = host.sh(f"gpg --show-keys --with-colons {shlex.quote(path)}").stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def test_keys_have_the_fingerprints_the_roles_are_given(host, vendor_vars):
    key_file, fingerprint = host.release["cuda_key"]
    cuda = f"{CUDA_REPOS}/{host.release['cuda_repo']}/x86_64/{key_file}"
    assert fingerprint_of(host, cuda) == vendor_vars[fingerprint]
    nct = "/srv/vendor-repo/libnvidia-container/gpgkey"
    assert fingerprint_of(host, nct) == vendor_vars["vendor_repo_nct_key_fingerprint"]
    dock = "/srv/vendor-repo/docker/linux/debian/gpg"
    assert fingerprint_of(host, dock) == vendor_vars["vendor_repo_docker_key_fingerprint"]


def test_a_repository_signed_by_another_key_is_refused(host):
    # Point the CUDA repo at the Docker key: apt must refuse it, as for a wrong real key.
    cuda_repo = host.release["cuda_repo"]
    result = host.sh(
        "mv /etc/apt/sources.list.d/sim-cuda.list /root/sim-cuda.list\n"
        "echo 'deb [signed-by=/usr/share/keyrings/sim-docker.gpg] "
        f"file:/srv/vendor-repo/compute/cuda/repos/{cuda_repo}/x86_64 /' "
        "> /etc/apt/sources.list.d/wrong.list\n"
        "rc=0; apt-get update -o APT::Update::Error-Mode=any 2>&1 || rc=$?\n"
        "rm /etc/apt/sources.list.d/wrong.list\n"
        "mv /root/sim-cuda.list /etc/apt/sources.list.d/sim-cuda.list\n"
        "apt-get update -qq\n"
        "exit $rc",
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert re.search(r"NO_PUBKEY|not signed|Missing key", result.stdout), result.stdout


def test_debian13_directory_is_as_nvidia_publishes_it(host, vendor_vars):
    if host.release["cuda_repo"] != "debian13":
        pytest.skip("only NVIDIA's debian13 directory differs")
    directory = VENDOR_REPO / "compute" / "cuda" / "repos" / "debian13" / "x86_64"
    names = re.findall(r"(?m)^Package: (\S+)$", (directory / "Packages").read_text())
    assert "cuda-keyring" in names
    driver = [
        name for name in names if re.match(r"(cuda-drivers|nvidia-|libnvidia-|libcuda)", name)
    ]
    assert driver == [], driver
    assert sorted(path.name for path in directory.glob("*.pub")) == ["8793F200.pub"]
    # Its cuda-keyring carries its own key, as NVIDIA's does for debian13.
    keyring = host.sh(
        f"dpkg-deb -x {CUDA_REPOS}/debian13/x86_64/cuda-keyring_1.1-1_all.deb /tmp/keyring && "
        "gpg --show-keys --with-colons /tmp/keyring/usr/share/keyrings/cuda-archive-keyring.gpg"
    ).stdout
    assert f"fpr:::::::::{vendor_vars['vendor_repo_cuda_debian13_key_fingerprint']}:" in keyring
    # Signed with that key only: the common key (3bf863cc's stand-in) does not verify it.
    result = host.sh(
        "mv /etc/apt/sources.list.d/sim-cuda.list /root/sim-cuda.list\n"
        "echo 'deb [signed-by=/usr/share/keyrings/sim-cuda-driver.gpg] "
        f"file:{CUDA_REPOS}/debian13/x86_64 /' > /etc/apt/sources.list.d/wrong.list\n"
        "rc=0; apt-get update -o APT::Update::Error-Mode=any 2>&1 || rc=$?\n"
        "rm /etc/apt/sources.list.d/wrong.list\n"
        "mv /root/sim-cuda.list /etc/apt/sources.list.d/sim-cuda.list\n"
        "apt-get update -qq\n"
        "exit $rc",
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert re.search(r"NO_PUBKEY|not signed|Missing key", result.stdout), result.stdout


def test_driver_versions_and_names_match_nvidia(host):
    madison = host.sh("apt-cache madison cuda-drivers-550").stdout
    versions = re.findall(r"\|\s*(\S+)\s*\|", madison)
    assert sorted(versions) == ["550.127.05-1", "550.144.03-1", "550.163.01-1"]
    # Without a pin apt would take the newest: the reason the role must pin.
    candidate = host.sh("apt-cache policy cuda-drivers-550").stdout
    assert "Candidate: 550.163.01-1" in candidate


def pin_driver(host: Host, version: str) -> None:
    # As with NVIDIA's repo, apt's resolver will not choose older versions of the dependencies
    # of cuda-drivers-550=<version> by itself: the whole family has to be pinned.
    host.sh(
        "printf 'Package: nvidia-* libnvidia-* libcuda1 cuda-drivers cuda-drivers-*\\n"
        f"Pin: version {version}-*\\nPin-Priority: 1001\\n' > /etc/apt/preferences.d/sim-driver"
    )


def test_unpinned_exact_install_fails_like_the_real_repo(host):
    result = host.sh("apt-get install -s -y cuda-drivers-550=550.144.03-1", check=False)
    assert result.returncode != 0
    assert "held broken packages" in result.stderr + result.stdout


def test_driver_needs_a_reboot_then_reports_the_exact_version(host, vendor_vars):
    pin_driver(host, "550.144.03")
    # What a real host needs for the module to load at the next boot: the running kernel's
    # headers before the driver (DKMS builds for kernels with headers), nouveau blacklisted.
    host.sh(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        f"{vendor_vars['vendor_repo_kernel_headers_package']}"
        " && echo 'blacklist nouveau' > /etc/modprobe.d/blacklist-nouveau.conf"
    )
    host.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cuda-drivers-550=550.144.03-1")
    before = host.sh("nvidia-smi", check=False)
    assert before.returncode == 9, before
    assert "couldn't communicate with the NVIDIA driver" in before.stdout

    host.reboot()
    query = (
        host.sh(
            "nvidia-smi --query-gpu=driver_version,name,memory.total --format=csv,noheader,nounits"
        )
        .stdout.strip()
        .splitlines()
    )
    assert len(query) == 4
    assert all(line.startswith("550.144.03, ") for line in query), query
    table = host.sh("nvidia-smi").stdout
    assert re.search(r"Driver Version: 550\.144\.03\s+CUDA Version: 12\.4", table), table
    proc = host.sh("cat /proc/driver/nvidia/version").stdout
    assert proc.startswith("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.144.03  "), proc
    # nvidia-persistenced.service as NVIDIA's Ubuntu packages ship it (facts/nvidia-stack.md):
    # static, so enabling does nothing, and run with --no-persistence-mode.
    assert host.sh("systemctl is-enabled nvidia-persistenced", check=False).stdout.strip() == (
        "static"
    )
    exec_start = host.sh("systemctl show -p ExecStart nvidia-persistenced").stdout
    assert "--no-persistence-mode" in exec_start, exec_start
    assert (
        "StopWhenUnneeded=yes"
        in host.sh("systemctl show -p StopWhenUnneeded nvidia-persistenced").stdout
    )


def test_upgrade_without_reboot_gives_version_mismatch(host):
    pin_driver(host, "550.163.01")
    host.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cuda-drivers-550=550.163.01-1")
    result = host.sh("nvidia-smi", check=False)
    assert result.returncode == 18, result
    assert "Driver/library version mismatch" in result.stdout
    host.reboot()
    assert (
        host.sh("nvidia-smi --query-gpu=driver_version --format=csv,noheader").stdout.split()
        == ["550.163.01"] * 4
    )


def test_cuda_toolkit_12_4_only_where_nvidia_ships_it(host):
    policy = host.sh("apt-cache policy cuda-toolkit-12-4").stdout
    if not host.release["cuda_12_4"]:
        assert "Candidate" not in policy
        return
    host.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cuda-toolkit-12-4")
    out = host.sh("/usr/local/cuda-12.4/bin/nvcc --version").stdout
    assert "Cuda compilation tools, release 12.4, V12.4.131" in out


def test_cuda_toolkit_packages_own_the_cuda_alternative_and_libcudart(host):
    if not host.release["cuda_12_4"]:
        pytest.skip("no cuda-toolkit-12-4 in this repository")
    host.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cuda-toolkit-12-4")
    # As NVIDIA's packages do: /usr/local/cuda -> /etc/alternatives/cuda -> the newest toolkit.
    assert host.sh("readlink /usr/local/cuda").stdout.strip() == "/etc/alternatives/cuda"
    query = host.sh("update-alternatives --query cuda").stdout
    assert "Value: /usr/local/cuda-12.4" in query
    host.sh("echo /usr/local/cuda-12.4/lib64 > /etc/ld.so.conf.d/sim-cuda.conf && ldconfig")
    cache = host.sh("ldconfig -p").stdout
    assert "libcudart.so.12 (libc6,x86-64) => /usr/local/cuda-12.4/lib64/libcudart.so.12" in cache
    host.sh(
        "rm /etc/ld.so.conf.d/sim-cuda.conf && apt-get purge -y -qq cuda-toolkit-12-4 "
        "cuda-nvcc-12-4 cuda-cudart-12-4 cuda-toolkit-12-4-config-common && ldconfig"
    )
    assert host.sh("update-alternatives --query cuda", check=False).returncode == 2


RUNFILE = "/srv/vendor-repo/compute/cuda/12.4.1/local_installers/cuda_12.4.1_550.54.15_linux.run"


def test_cuda_runfile_is_published_at_nvidias_path_with_its_checksum(vendor_vars):
    url = vendor_vars["vendor_repo_cuda_runfile_url"]
    assert url == f"file://{RUNFILE}"
    content = (VENDOR_REPO / RUNFILE.removeprefix("/srv/vendor-repo/")).read_bytes()
    assert hashlib.sha256(content).hexdigest() == vendor_vars["vendor_repo_cuda_runfile_sha256"]


def test_cuda_runfile_needs_libxml2_and_gcc_unless_overridden(host):
    # The test images have neither: the installer fails to load, then stops at its gcc check.
    toolkit = "--silent --toolkit --toolkitpath=/opt/prereq/cuda-12.4"
    no_xml = host.sh(f"sh {RUNFILE} {toolkit}", check=False)
    assert no_xml.returncode == 127
    assert "libxml2.so.2: cannot open shared object file" in no_xml.stderr
    host.sh("apt-get install -qq -y --no-install-recommends libxml2")
    no_gcc = host.sh(f"sh {RUNFILE} {toolkit}", check=False)
    assert no_gcc.returncode != 0
    assert "Failed to verify gcc version" in no_gcc.stderr
    assert (
        "Missing gcc. gcc is required to continue."
        in host.sh("cat /var/log/cuda-installer.log").stdout
    )
    assert host.sh("test -e /opt/prereq", check=False).returncode != 0
    host.sh(f"sh {RUNFILE} {toolkit} --override && test -x /opt/prereq/cuda-12.4/bin/nvcc")
    host.sh("rm -rf /opt/prereq && apt-get install -qq -y --no-install-recommends gcc")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--toolkit", "pass --silent"),
        ("--silent", "--silent without --toolkit would install the bundled driver 550.54.15"),
        ("--silent --toolkit --driver", "Refusing to install the bundled driver 550.54.15"),
        ("--silent --toolkit --no-such-option", "Unknown option: --no-such-option"),
    ],
)
def test_cuda_runfile_refuses_anything_but_a_silent_toolkit_install(host, args, message):
    result = host.sh(f"sh {RUNFILE} {args} --toolkitpath=/opt/refused/cuda-12.4", check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert host.sh("test -e /opt/refused", check=False).returncode != 0
    assert message in host.sh("cat /var/log/cuda-installer.log").stdout


def test_cuda_runfile_installs_the_toolkit_where_it_is_told(host):
    host.sh(
        f"mkdir -p /var/tmp/runfile && sh {RUNFILE} --silent --toolkit "
        "--toolkitpath=/opt/cuda-12.4 --tmpdir=/var/tmp/runfile "
        "--no-opengl-libs --no-drm --no-man-page"
    )
    nvcc = host.sh("/opt/cuda-12.4/bin/nvcc --version").stdout
    assert "Cuda compilation tools, release 12.4, V12.4.131" in nvcc
    version = json.loads(host.sh("cat /opt/cuda-12.4/version.json").stdout)
    assert version["cuda"]["version"] == "12.4.1"
    host.sh("echo /opt/cuda-12.4/lib64 > /etc/ld.so.conf.d/sim-runfile.conf && ldconfig")
    cache = host.sh("ldconfig -p").stdout
    assert "libcudart.so.12 (libc6,x86-64) => /opt/cuda-12.4/lib64/libcudart.so.12" in cache
    log = host.sh("cat /var/log/cuda-installer.log").stdout
    assert "Toolkit:  Installed in /opt/cuda-12.4/" in log
    assert "Driver:   Not Selected" in log
    host.sh("rm -rf /opt/cuda-12.4 /var/tmp/runfile /etc/ld.so.conf.d/sim-runfile.conf && ldconfig")


def test_container_toolkit_versions(host):
    madison = host.sh("apt-cache madison nvidia-container-toolkit").stdout
    assert {"1.17.7-1", "1.17.8-1", "1.18.0-1"} <= set(re.findall(r"\|\s*(\S+)\s*\|", madison))
    pkgs = (
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-base",
        "libnvidia-container-tools",
        "libnvidia-container1",
    )
    host.sh(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        + " ".join(f"{p}=1.17.8-1" for p in pkgs)
    )
    assert "1.17.8" in host.sh("nvidia-ctk --version").stdout
    # Without runc (Docker is not installed here) the runtime can only be checked to exist.
    assert host.sh("test -x /usr/bin/nvidia-container-runtime").returncode == 0
    assert "cli-version: 1.17.8" in host.sh("nvidia-container-cli --version").stdout


NCT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
DAEMON_JSON_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "daemon_json"


def install_toolkit(host: Host) -> None:
    host.sh(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        + " ".join(f"{p}=1.17.8-1" for p in NCT_PACKAGES)
    )


def test_nvidia_ctk_runtime_configure_writes_what_nvidias_writes(host):
    # tests/fixtures/daemon_json/nvidia_ctk_runtime_configure.json is a file the real
    # `nvidia-ctk runtime configure --runtime=docker` wrote (SOURCES.md): the relative runtime
    # path, sorted keys, 4-space indent, no final newline.
    install_toolkit(host)
    real = (DAEMON_JSON_FIXTURES / "nvidia_ctk_runtime_configure.json").read_text().rstrip("\n")
    host.sh("mkdir -p /tmp/ctk && rm -f /tmp/ctk/daemon.json")
    host.sh("nvidia-ctk runtime configure --runtime=docker --config=/tmp/ctk/daemon.json")
    assert host.sh("cat /tmp/ctk/daemon.json").stdout == real
    # Other keys stay; --set-as-default adds default-runtime; it never restarts Docker.
    host.sh("""echo '{"log-driver": "json-file"}' > /tmp/ctk/daemon.json""")
    out = host.sh(
        "nvidia-ctk runtime configure --runtime=docker --config=/tmp/ctk/daemon.json "
        "--set-as-default 2>&1"
    ).stdout
    assert "It is recommended that docker daemon be restarted." in out
    assert json.loads(host.sh("cat /tmp/ctk/daemon.json").stdout) == {
        "default-runtime": "nvidia",
        "log-driver": "json-file",
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
    }


def test_nvidia_ctk_links_dev_char_only_with_the_driver_loaded(host):
    # NVIDIA/nvidia-docker#1671: `nvidia-ctk system create-dev-char-symlinks --create-all`.
    install_toolkit(host)
    host.sh("rm -f /run/nvidia-sim/loaded-driver-version; rm -rf /dev/char/195:* /dev/char/509:*")
    unloaded = host.sh("nvidia-ctk system create-dev-char-symlinks --create-all", check=False)
    assert unloaded.returncode == 1
    assert "missing required device major nvidia" in unloaded.stderr
    # The simulated driver's state after a boot: the module "loaded", two GPUs on the bus.
    host.sh(
        "mkdir -p /run/nvidia-sim /tmp/ctk"
        " && echo 550.144.03 > /run/nvidia-sim/loaded-driver-version"
        """ && echo '{"gpus": [{"index": 0}, {"index": 1}]}' > /tmp/ctk/gpus.json"""
    )
    loaded = host.sh(
        "NVIDIA_SIM_PROFILE=/tmp/ctk/gpus.json nvidia-ctk system create-dev-char-symlinks "
        "--create-all"
    )
    assert "Creating link /dev/char/195:255 => /dev/nvidiactl" in loaded.stderr
    assert host.sh("readlink /dev/char/509:0").stdout.strip() == "/dev/nvidia-uvm"
    assert host.sh("readlink /dev/char/195:1").stdout.strip() == "/dev/nvidia1"
    assert host.sh("test -e /dev/char/195:2", check=False).returncode != 0
    again = host.sh(
        "NVIDIA_SIM_PROFILE=/tmp/ctk/gpus.json nvidia-ctk system create-dev-char-symlinks "
        "--create-all"
    )
    assert "file exists" in again.stderr
    host.sh("rm -f /run/nvidia-sim/loaded-driver-version")


def test_docker_repo_has_containerd_io_and_the_cli_plugins(host):
    codename = host.release["codename"]
    suffix = "debian.12" if codename == "bookworm" else "debian.13"
    madison = host.sh("apt-cache madison containerd.io").stdout
    assert {"1.7.25-1", "2.0.5-1"} <= set(re.findall(r"\|\s*(\S+)\s*\|", madison)), madison
    for package, version in (
        ("docker-compose-plugin", "2.32.4"),
        ("docker-buildx-plugin", "0.20.0"),
    ):
        madison = host.sh(f"apt-cache madison {package}").stdout
        assert f"{version}-1~{suffix}~{codename}" in madison, madison
    pool = f"/srv/vendor-repo/docker/linux/debian/pool/{codename}/stable"
    files = host.sh(f"dpkg-deb -c {pool}/docker-compose-plugin_2.32.4-*.deb").stdout
    assert "./usr/libexec/docker/cli-plugins/docker-compose" in files, files


def test_docker_ce_versions_carry_epoch_and_distro_suffix(host):
    codename = host.release["codename"]
    madison = host.sh("apt-cache madison docker-ce").stdout
    suffix = "debian.12" if codename == "bookworm" else "debian.13"
    assert f"5:27.5.1-1~{suffix}~{codename}" in madison
    # docker-ce is Debian's engine repackaged: its dependencies come from the Debian mirror
    # subset, and it replaces docker.io as the real docker-ce does.
    plan = host.sh(
        f"apt-get install -s -y docker-ce=5:27.5.1-1~{suffix}~{codename} "
        f"docker-ce-cli=5:27.5.1-1~{suffix}~{codename} containerd.io"
    ).stdout
    assert re.search(r"^Inst docker-ce ", plan, re.MULTILINE), plan
    assert re.search(r"^Inst containerd ", plan, re.MULTILINE), plan
    assert not re.search(r"^Inst docker\.io ", plan, re.MULTILINE), plan
    show = host.sh(f"apt-cache show docker-ce=5:27.5.1-1~{suffix}~{codename}").stdout
    assert re.search(r"^Conflicts: .*docker\.io", show, re.MULTILINE), show


def test_docker_ce_and_its_cli_ship_engine_and_client(host):
    # Debian 13's docker.io has no client (it moved to docker-cli, which conflicts with
    # docker-ce-cli): between them the two simulated packages must carry both, as Docker's do.
    codename = host.release["codename"]
    pool = f"/srv/vendor-repo/docker/linux/debian/pool/{codename}/stable"
    files = host.sh(f"for deb in {pool}/docker-ce*_27.5.1-*.deb; do dpkg-deb -c $deb; done").stdout
    assert re.search(r" \./usr/bin/docker$", files, re.MULTILINE), files
    assert re.search(r" \./usr/sbin/dockerd$", files, re.MULTILINE), files


def test_kernel_headers_for_the_running_kernel(host, vendor_vars):
    package = vendor_vars["vendor_repo_kernel_headers_package"]
    assert host.sh(f"apt-cache show {package}").returncode == 0


@pytest.mark.parametrize(
    "packages",
    [
        "dkms build-essential initramfs-tools",
        "docker.io",
        "python3-docker",
        "rsync acl",
        "python3-venv python3-pip",
    ],
)
def test_debian_mirror_subset_serves_what_the_roles_install(host, packages):
    # The test hosts see no Debian server: every package a role takes from the distribution
    # must resolve, with its dependencies, from the harness's subset.
    plan = host.sh(f"apt-get install -s -y --no-install-recommends {packages}")
    for package in packages.split():
        assert re.search(rf"^Inst {re.escape(package)} ", plan.stdout, re.MULTILINE), plan.stdout
