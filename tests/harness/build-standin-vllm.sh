#!/usr/bin/env bash
# Build the stand-in vLLM OpenAI server images (tests/harness/standin-vllm) on top of the local
# llmops-test/debian:12 image: no registry is pulled from. Each image carries a label with the
# hash of its recipe (this script, the stand-in's files, the replayed logs and the base image);
# when every tag already has it the build is skipped.
#
#   build-standin-vllm.sh        -> llmops-test/vllm-openai:v0.8.5, :v0.9.0, :v0.10.1.1, :latest
#
# The variants differ where real vLLM images differ (see standin-vllm/README.md):
#   v0.8.5     CUDA floor 12.4, entrypoint python3 -m vllm.entrypoints.openai.api_server,
#              version in the OCI labels, default scenario v0_success (the seed's log)
#   v0.9.0     CUDA floor 12.8, same entrypoint, version in VLLM_VERSION, default v1_success
#   v0.10.1.1  CUDA floor 12.8, entrypoint vllm serve, version only in the tag, default v1_success
#   latest     the v0.10.1.1 image under a tag that says no version
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
src="$here/standin-vllm"
logs="$repo_root/tests/fixtures/vllm_logs"
base=${LLMOPS_STANDIN_BASE:-llmops-test/debian:12}
repo=${LLMOPS_STANDIN_REPO:-llmops-test/vllm-openai}

log() { printf '[build-standin-vllm] %s\n' "$*" >&2; }

base_id=$(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null) || {
  log "base image $base is missing: run tests/harness/build-image.sh 12 (make harness) first"
  exit 1
}
recipe_hash=$( { cat "$0"; cat "$src"/*; cat "$logs"/*.log; cat "$repo_root/tests/fixtures/model_configs/qwen3-30b-a3b.json"; echo "$base_id"; } | sha256sum | cut -c1-16)

#        tag        version   cuda  entrypoint  default scenario  version given by
variants=(
  "v0.8.5    0.8.5     12.4  api_server  v0_success  labels"
  "v0.9.0    0.9.0     12.8  api_server  v1_success  env"
  "v0.10.1.1 0.10.1.1  12.8  serve       v1_success  tag"
)

up_to_date=true
for variant in "${variants[@]}" "latest"; do
  tag=${variant%% *}
  current=$(docker image inspect -f '{{ index .Config.Labels "llmops.recipe" }}' "$repo:$tag" 2>/dev/null || true)
  [ "$current" = "$recipe_hash" ] || up_to_date=false
done
if $up_to_date; then
  log "$repo images are up to date (recipe $recipe_hash)"
  exit 0
fi

work=$(mktemp -d /var/tmp/llmops-standin.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/standin/logs" "$work/standin/vllm/entrypoints/openai" "$work/standin/bin"
cp "$src/standin_vllm.py" "$src/flag_budget.py" "$src/scenarios.json" "$work/standin/"
cp "$repo_root/tests/fixtures/model_configs/qwen3-30b-a3b.json" "$work/standin/"
cp "$logs"/*.log "$work/standin/logs/"
# What `python3 -m vllm.entrypoints.openai.api_server` and `vllm serve` run in the stand-in.
: >"$work/standin/vllm/__init__.py"
: >"$work/standin/vllm/entrypoints/__init__.py"
: >"$work/standin/vllm/entrypoints/openai/__init__.py"
printf 'import standin_vllm\n\nstandin_vllm.main("api_server.py")\n' \
  >"$work/standin/vllm/entrypoints/openai/api_server.py"
printf '#!/usr/bin/python3\nimport standin_vllm\n\nstandin_vllm.main("vllm")\n' >"$work/standin/bin/vllm"
chmod 0755 "$work/standin/bin/vllm"

for variant in "${variants[@]}"; do
  read -r tag version cuda style scenario given <<<"$variant"
  require=$(tr -d '\n' <"$src/require-cuda-$cuda.txt")
  case "$style" in
    api_server) entrypoint='["python3", "-m", "vllm.entrypoints.openai.api_server"]' ;;
    serve) entrypoint='["vllm", "serve"]' ;;
  esac
  version_lines=""
  case "$given" in
    labels) version_lines="LABEL org.opencontainers.image.version=\"$version\"" ;;
    env) version_lines="ENV VLLM_VERSION=\"$version\"" ;;
  esac
  log "building $repo:$tag (vLLM $version, CUDA >= $cuda, $style, recipe $recipe_hash)"
  docker build -q -t "$repo:$tag" -f - "$work" >"$work/build.log" 2>&1 <<DOCKERFILE || { cat "$work/build.log" >&2; exit 1; }
FROM $base
COPY standin /opt/standin
RUN ln -s /opt/standin/bin/vllm /usr/local/bin/vllm
ENV PYTHONPATH=/opt/standin PYTHONUNBUFFERED=1 \\
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \\
    NVIDIA_REQUIRE_CUDA="$require" \\
    STANDIN_VLLM_VERSION=$version STANDIN_DEFAULT_SCENARIO=$scenario
$version_lines
LABEL llmops.recipe=$recipe_hash \\
      org.opencontainers.image.title="vllm-openai (llmops.gpu_serving test stand-in)" \\
      org.opencontainers.image.description="Replays real vLLM $version startup logs and serves the OpenAI endpoints; no engine"
STOPSIGNAL SIGTERM
EXPOSE 8000
ENTRYPOINT $entrypoint
CMD []
DOCKERFILE
done
docker tag "$repo:v0.10.1.1" "$repo:latest"
log "built $repo:{v0.8.5,v0.9.0,v0.10.1.1,latest}"
