#!/usr/bin/env bash
# A local package index holding the huggingface_hub client the model_sync role installs into its
# virtualenv, with every dependency, as binary wheels for the test hosts' Pythons (Debian 12:
# CPython 3.11, Debian 13: 3.13; x86_64 manylinux). molecule/model_sync copies it to a test host
# and points model_sync_pip_index_url at it (file://), so the role's real pip install runs there
# without the internet.
#
#   tests/output/model-sync-wheels/simple/<project>/index.html + the wheels
#
# The layout is PEP 503's "simple" repository API (one directory per normalized project name,
# an HTML page of links to the files); pip reads index.html of a directory for a file:// index
# (pip's index/collector.py, _get_index_content). Downloaded from PyPI once, here, at harness
# time; skipped while the stamp holds the hash of this script and the role's pinned version.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${LLMOPS_MODEL_SYNC_WHEELS:-$root/tests/output/model-sync-wheels}
version=$(sed -n 's/^model_sync_huggingface_hub_version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' \
  "$root/roles/model_sync/defaults/main.yml")
pythons="3.11 3.13"

log() { printf '[model-sync-wheels] %s\n' "$*" >&2; }

[ -n "$version" ] || { log "no model_sync_huggingface_hub_version in the role's defaults"; exit 1; }
hash=$( { cat "$0"; echo "$version $pythons"; } | sha256sum | cut -c1-16)
if [ "$(cat "$out/.llmops-recipe" 2>/dev/null || true)" = "$hash" ]; then
  log "$out is up to date (huggingface_hub $version, recipe $hash)"
  exit 0
fi
pip=${PIP:-$root/.venv/bin/pip}
rm -rf "${out:?}.tmp"
mkdir -p "$out.tmp/files"
for python in $pythons; do
  log "huggingface_hub==$version and its dependencies for CPython $python"
  "$pip" download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version "$python" --implementation cp --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    --dest "$out.tmp/files" "huggingface_hub==$version"
done
python3 - "$out.tmp" <<'PY'
import html, os, re, sys
root = sys.argv[1]
files = os.path.join(root, "files")
projects = {}
for name in sorted(os.listdir(files)):
    # A wheel's name starts with its distribution name, - replaced by _ (PEP 427); PEP 503
    # normalizes runs of -, _ and . to one - in lower case.
    project = re.sub(r"[-_.]+", "-", name.split("-", 1)[0]).lower()
    projects.setdefault(project, []).append(name)
for project, names in projects.items():
    directory = os.path.join(root, "simple", project)
    os.makedirs(directory)
    links = []
    for name in names:
        os.rename(os.path.join(files, name), os.path.join(directory, name))
        links.append(f'<a href="{html.escape(name)}">{html.escape(name)}</a><br>')
    with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as page:
        page.write("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
os.rmdir(files)
print(f"{len(projects)} projects", file=sys.stderr)
PY
echo "$hash" >"$out.tmp/.llmops-recipe"
rm -rf "$out"
mv "$out.tmp" "$out"
log "$out: huggingface_hub $version for CPython $pythons"
