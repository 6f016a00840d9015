#!/usr/bin/env bash
# Write the tiny random-weight Qwen3-MoE models the real engine serves, offline, with the
# transformers and torch inside llmops-test/vllm-cpu (vllm-cpu/tiny_model.py says what is real):
#
#   tests/output/models/llmops-test/tiny-qwen3-moe        head_dim 64: serves and answers
#   tests/output/models/llmops-test/tiny-qwen3-moe-hd16   head_dim 16: the CPU attention kernel
#                                                          refuses it at the first request
#
# The layout is model_sync's (<base>/<org>/<name>). Skipped when a directory's stamp holds the
# hash of its recipe (the script, its arguments, the vLLM version).
#
#   build-tiny-model.sh [VERSION]        default 0.32.0
set -euo pipefail

version=${1:-0.32.0}
here=$(cd "$(dirname "$0")" && pwd)
out=${LLMOPS_TINY_MODEL_OUT:-$here/../output/models/llmops-test}
image=${LLMOPS_VLLM_CPU_REPO:-llmops-test/vllm-cpu}:$version

log() { printf '[build-tiny-model] %s\n' "$*" >&2; }

docker image inspect "$image" >/dev/null 2>&1 || {
  log "$image is missing: run tests/harness/build-vllm-cpu.sh $version first"
  exit 1
}
mkdir -p "$out"
for variant in "tiny-qwen3-moe --head-dim 64" "tiny-qwen3-moe-hd16 --head-dim 16"; do
  read -r name args <<<"$variant"
  hash=$( { cat "$0" "$here/vllm-cpu/tiny_model.py"; echo "$version $args"; } | sha256sum | cut -c1-16)
  if [ "$(cat "$out/$name/.llmops-recipe" 2>/dev/null || true)" = "$hash" ]; then
    log "$out/$name is up to date (recipe $hash)"
    continue
  fi
  rm -rf "${out:?}/$name.tmp"
  mkdir -p "$out/$name.tmp"
  # shellcheck disable=SC2086  # $args is a word list on purpose
  docker run --rm --network none --entrypoint python3 \
    --user "$(id -u):$(id -g)" -e HOME=/tmp -e HF_HUB_DISABLE_PROGRESS_BARS=1 \
    -v "$here/vllm-cpu/tiny_model.py:/opt/llmops/tiny_model.py:ro" \
    -v "$out/$name.tmp:/out" "$image" /opt/llmops/tiny_model.py --out /out $args >/dev/null
  echo "$hash" >"$out/$name.tmp/.llmops-recipe"
  rm -rf "${out:?}/$name"
  mv "$out/$name.tmp" "$out/$name"
  log "wrote $out/$name ($(du -sh "$out/$name" | cut -f1))"
done
