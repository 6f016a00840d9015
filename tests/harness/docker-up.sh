#!/usr/bin/env bash
# Make sure a Docker engine answers. If none does, install Debian's docker.io (when dockerd is
# missing) and start dockerd in the background, logging to tests/output/dockerd.log.
# A daemon that was already running is left alone, and so is one this script started: the
# harness never stops a daemon (other users of the machine may rely on it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out="$here/../output"
mkdir -p "$out"

log() { printf '[docker-up] %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
  log "Docker engine already answers: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    log "dockerd is missing and this is not root: install docker.io (or Docker CE) first"
    exit 1
  fi
  log "dockerd missing: installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >"$out/apt-docker.log" 2>&1 || {
    log "apt-get install docker.io failed; see $out/apt-docker.log"
    tail -n 20 "$out/apt-docker.log" >&2
    exit 1
  }
fi

if [ "$(id -u)" -ne 0 ]; then
  log "no Docker engine answers and only root can start dockerd here"
  exit 1
fi

log "starting dockerd (log: $out/dockerd.log)"
# setsid: the daemon must outlive this script and the make target that called it.
setsid dockerd >"$out/dockerd.log" 2>&1 </dev/null &

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine answers: $(docker version --format '{{.Server.Version}}')"
    exit 0
  fi
  sleep 1
done

log "dockerd did not answer within 60 s; last lines of its log:"
tail -n 30 "$out/dockerd.log" >&2
exit 1
