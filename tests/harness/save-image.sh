#!/usr/bin/env bash
# Save a locally built image as a `docker save` archive under tests/output/images, for hosts
# that cannot pull (the sandbox and the site scenario load it through vllm_server_image_archive).
# Skipped when the archive already holds the image's current id.
#
#   save-image.sh IMAGE[:TAG] ARCHIVE_NAME
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../output/images"
image=$1
archive="$out/$2"
mkdir -p "$out"
id=$(docker image inspect -f '{{.Id}}' "$image")
if [ -f "$archive" ] && [ "$(cat "$archive.id" 2>/dev/null || true)" = "$id" ]; then
  echo "[save-image] $archive is up to date" >&2
  exit 0
fi
docker image save -o "$archive.tmp" "$image"
mv "$archive.tmp" "$archive"
echo "$id" >"$archive.id"
echo "[save-image] saved $image to $archive ($(du -h "$archive" | cut -f1))" >&2
