#!/usr/bin/env bash
# Build llmops-test/ubuntu-facts:24.04, the test platform of the roles' Ubuntu code paths.
#
#   build-ubuntu-facts-image.sh   -> image llmops-test/ubuntu-facts:24.04
#
# No Ubuntu archive is reachable where this repository is tested, so this is no Ubuntu: its
# userland is Debian 13's (the image llmops-test/debian:13 of build-image.sh), and only the files
# Ansible reads its distribution facts from say Ubuntu 24.04 "noble", with the contents they have
# on Canonical's 24.04 images: /etc/os-release (a link to /usr/lib/os-release on both),
# /etc/lsb-release, and /etc/debian_version, which Ubuntu fills with the Debian release it
# branched from. The roles then take their Ubuntu paths (vars/Ubuntu.yml, NVIDIA's ubuntu2404
# repository, Docker's noble suite); what only a real Ubuntu userland would show is not tested
# by it (DEVELOPERS.md, "The Ubuntu 24.04 test platform").
#
# Like build-image.sh, the image carries a label with the hash of its recipe (this script and
# the base image's ID): an image with the same hash is not built again.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
base="llmops-test/debian:13"
image="llmops-test/ubuntu-facts:24.04"

"$here/build-image.sh" 13
base_id=$(docker image inspect -f '{{.Id}}' "$base")
recipe_hash=$( { cat "$0"; echo "$base_id"; } | sha256sum | cut -c1-16)

if [ "$(docker image inspect -f '{{ index .Config.Labels "llmops.recipe" }}' "$image" 2>/dev/null || true)" = "$recipe_hash" ]; then
  echo "[build-image] $image is up to date (recipe $recipe_hash)" >&2
  exit 0
fi

work=$(mktemp -d /var/tmp/llmops-ubuntu-facts.XXXXXX)
container=""
cleanup() {
  rm -rf "$work"
  if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# Ubuntu 24.04.1's /usr/lib/os-release (base-files 13ubuntu10.1).
cat >"$work/os-release" <<'OSRELEASE'
PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
OSRELEASE
cat >"$work/lsb-release" <<'LSBRELEASE'
DISTRIB_ID=Ubuntu
DISTRIB_RELEASE=24.04
DISTRIB_CODENAME=noble
DISTRIB_DESCRIPTION="Ubuntu 24.04.1 LTS"
LSBRELEASE
echo "trixie/sid" >"$work/debian_version"

echo "[build-image] $image from $base (recipe $recipe_hash)" >&2
container=$(docker create "$base")
docker cp "$work/os-release" "$container:/usr/lib/os-release"
docker cp "$work/lsb-release" "$container:/etc/lsb-release"
docker cp "$work/debian_version" "$container:/etc/debian_version"
docker commit \
  --change "LABEL llmops.recipe=$recipe_hash" \
  --change 'LABEL org.opencontainers.image.description="Debian 13 userland with Ubuntu 24.04 noble distribution facts, for llmops.gpu_serving tests"' \
  "$container" "$image" >/dev/null
echo "[build-image] built $image" >&2
