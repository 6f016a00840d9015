#!/usr/bin/env bash
# Install the Debian packages the harness needs when they are missing (fresh Debian 12, root):
# python3-venv for the virtualenv, debootstrap for test images, apt-utils for apt-ftparchive,
# gnupg for repository signing, rsync for model_sync's rsync-source tests and its benchmark.
# Docker itself is handled by docker-up.sh.
set -euo pipefail

need=()
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v apt-ftparchive >/dev/null 2>&1 || need+=(apt-utils)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
command -v make >/dev/null 2>&1 || need+=(make)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
${PYTHON:-python3} -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "[system-deps] missing Debian packages: ${need[*]} (install them as root)" >&2
  exit 1
fi
echo "[system-deps] installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
