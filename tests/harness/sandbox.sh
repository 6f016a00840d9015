#!/usr/bin/env bash
# The local sandbox GPU host used by `make demo`: a systemd container of the Ubuntu 24.04 test
# platform (Debian 13's userland with Ubuntu's distribution facts, build-ubuntu-facts-image.sh;
# NVIDIA's debian13 directory has no 550 branch, so site.yml cannot install the seed's driver on
# Debian 13 from the network) that can run Docker inside (for the docker_engine and vllm_server roles), with the simulated vendor
# repositories mounted read-only, reached by Ansible through the Docker connection plugin.
#
#   sandbox.sh up        start (or reuse) the sandbox and prepare it like a molecule host
#   sandbox.sh summary   what is real and what is simulated, and the host's state
#   sandbox.sh down      remove the container, its volumes and its network
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
name=${LLMOPS_SANDBOX_NAME:-llmops-sandbox}
network=${LLMOPS_SANDBOX_NETWORK:-llmops-sandbox-net}
image=${LLMOPS_SANDBOX_IMAGE:-llmops-test/ubuntu-facts:24.04}
port=${LLMOPS_SANDBOX_PORT:-8000}
# The demo key of inventories/sandbox/hosts.yml.
api_key=${LLMOPS_SANDBOX_API_KEY:-llmops-sandbox-demo-key}

# Docker-in-Docker without --privileged (refused on the machines this is tested on): every
# capability but SYS_RESOURCE, no seccomp/apparmor confinement, and a bridge network of its
# own so the inner dockerd does not fight the outer one over docker0 and iptables.
caps=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
  LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
  SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_TIME
  SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG
  WAKE_ALARM BLOCK_SUSPEND AUDIT_READ)

log() { printf '[sandbox] %s\n' "$*" >&2; }

up() {
  [ -f "$repo_root/tests/output/vendor-repo/vendor-vars.yml" ] || {
    log "the simulated vendor repositories are missing: run 'make harness' first"
    exit 1
  }
  docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
  if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null || true)" = true ]; then
    log "reusing running container $name"
  else
    docker rm -f -v "$name" >/dev/null 2>&1 || true
    cap_args=()
    for cap in "${caps[@]}"; do cap_args+=(--cap-add "$cap"); done
    log "starting $name from $image"
    # --shm-size: the vLLM container shares the sandbox's IPC namespace and /dev/shm (--ipc host,
    # the seed's setting), and the CPU engine's shared-memory broadcast needs more than Docker's
    # default 64 MiB.
    docker run -d --name "$name" --hostname "$name" --network "$network" \
      "${cap_args[@]}" --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      --security-opt systempaths=unconfined \
      --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
      --shm-size 2g \
      -v "$name-docker:/var/lib/docker" \
      -v "$repo_root/tests/output/vendor-repo:/srv/vendor-repo:ro" \
      -v "$repo_root/tests/output/models:/srv/model-source:ro" \
      -p "127.0.0.1:$port:8000" \
      --restart unless-stopped \
      "$image" >/dev/null
  fi
  ansible-playbook -i "$repo_root/inventories/sandbox" "$repo_root/molecule/shared/prepare.yml"
}

down() {
  docker rm -f -v "$name" >/dev/null 2>&1 && log "removed container $name" || true
  docker volume rm "$name-docker" >/dev/null 2>&1 && log "removed volume $name-docker" || true
  docker network rm "$network" >/dev/null 2>&1 && log "removed network $network" || true
}

summary() {
  cat <<TXT

== llmops.gpu_serving sandbox ($name) ==
Real:      apt and its signature checks, systemd, users and files, Docker, the roles and
           modules of this collection, every task Ansible ran above.
Simulated: the GPUs (nvidia-smi answers from a profile of the seed's 4 x 22 GB cards) and the
           NVIDIA and Docker download servers (signed local repositories with the real package
           names and versions, small stand-in payloads).
vLLM:      real by default (vLLM's CPU build on a tiny random-weight Qwen3-MoE); with
           DEMO_ENGINE=replay, a stand-in replaying the seed's real 4 x 22 GB startup log.
TXT
  if docker exec "$name" test -x /usr/bin/nvidia-smi 2>/dev/null; then
    docker exec "$name" nvidia-smi --query-gpu=index,name,driver_version,memory.total \
      --format=csv || true
  else
    echo "nvidia-smi: not installed yet"
  fi
  if docker exec "$name" test -f /etc/llmops/serving.json 2>/dev/null; then
    echo
    report=$(mktemp)
    docker exec "$name" cat /etc/llmops/serving.json >"$report"
    python3 "$here/sandbox_summary.py" "$report" "http://127.0.0.1:$port" "$api_key" || {
      rm -f "$report"
      exit 1
    }
    rm -f "$report"
  else
    echo "No verified vLLM server yet (/etc/llmops/serving.json absent)."
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  summary) summary ;;
  *) echo "usage: $0 up|down|summary" >&2; exit 2 ;;
esac
