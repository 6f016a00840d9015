#!/usr/bin/env bash
# Build a systemd-capable Debian test image with debootstrap and `docker import` it.
#
#   build-image.sh 12|13          -> image llmops-test/debian:12 (bookworm) or :13 (trixie)
#
# No registry is reachable where this repo is tested, so images are made from Debian's archive.
# Each image carries a label with the hash of its recipe (this script): when an image with the
# same hash exists the build is skipped, so repeated runs cost nothing.
set -euo pipefail

release=${1:?usage: build-image.sh 12|13}
case "$release" in
  12) suite=bookworm ;;
  13) suite=trixie ;;
  *) echo "build-image.sh: release must be 12 or 13, got '$release'" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
mirror=${LLMOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
image="llmops-test/debian:$release"

# What a host needs for the roles under test: systemd as PID 1, python3 (+ apt bindings for
# ansible.builtin.apt), sudo, ca-certificates, gnupg for key checks, kmod/procps/iproute2 as on
# a real server.
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,gnupg,kmod,procps,iproute2,less,lsb-release

recipe_hash=$( { cat "$0"; echo "$suite $mirror $packages"; } | sha256sum | cut -c1-16)

if [ "$(docker image inspect -f '{{ index .Config.Labels "llmops.recipe" }}' "$image" 2>/dev/null || true)" = "$recipe_hash" ]; then
  echo "[build-image] $image is up to date (recipe $recipe_hash)" >&2
  exit 0
fi

command -v debootstrap >/dev/null || {
  echo "[build-image] installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

work=$(mktemp -d /var/tmp/llmops-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

echo "[build-image] debootstrap $suite into $root (recipe $recipe_hash)" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

security_suite="$suite-security"
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $security_suite main
SOURCES

# Units that cannot work in a container (no devices, no kernel modules to load, no consoles):
# masked so `systemctl is-system-running` reaches "running" instead of "degraded".
for unit in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
  systemd-modules-load.service systemd-remount-fs.service getty@tty1.service \
  console-getty.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  systemd-firstboot.service systemd-logind.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
echo "llmops-test" >"$root/etc/hostname"
: >"$root/etc/machine-id"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

echo "[build-image] importing $image" >&2
tar -C "$root" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change "LABEL llmops.recipe=$recipe_hash" \
  --change "LABEL org.opencontainers.image.description=\"Debian $release ($suite) with systemd for llmops.gpu_serving tests\"" \
  - "$image" >/dev/null
echo "[build-image] built $image" >&2
