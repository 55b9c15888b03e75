#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine with Go, Node and npm:
# Deno (pinned, from the npm package `deno`), go-task (pinned, `go install`) and the Debian
# packages the agent and the tests use. Idempotent: with everything present it takes ~1 s.
set -euo pipefail

DENO_VERSION=2.9.6
TASK_VERSION=v3.54.0
# iptables: the chaos soak cuts a node from the API server with a netfilter drop in its namespace.
APT_PACKAGES=(libmnl0 iproute2 util-linux procps ca-certificates iptables)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

log() { printf 'setup: %s\n' "$*" >&2; }

# Debian packages, only when one is missing.
. "$root/scripts/apt-install.sh"
apt_install "${APT_PACKAGES[@]}"

# Deno from npm: the package's platform dependency carries the binary.
if [ "$("$tools/bin/deno" --version 2>/dev/null | head -n1 | cut -d' ' -f2)" != "$DENO_VERSION" ]; then
  command -v npm >/dev/null || { log "npm is required to install Deno"; exit 1; }
  log "installing deno $DENO_VERSION from npm"
  rm -rf "$tools/npm"
  npm install --silent --no-audit --no-fund --prefix "$tools/npm" "deno@$DENO_VERSION" >/dev/null
  bin=$(find "$tools/npm/node_modules/@deno" -maxdepth 2 -type f -name deno | head -n1)
  [ -x "$bin" ] || { log "the npm package deno@$DENO_VERSION brought no binary"; exit 1; }
  ln -sf "$bin" "$tools/bin/deno"
fi

# go-task, built from the Go module proxy.
if [ "$("$tools/bin/task" --version 2>/dev/null | grep -o 'v\?3[.0-9]*' | head -n1 | sed 's/^v//')" != "${TASK_VERSION#v}" ]; then
  command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || { log "Go is required to install task"; exit 1; }
  log "installing task $TASK_VERSION with go install"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "github.com/go-task/task/v3/cmd/task@$TASK_VERSION"
fi

# Every npm dependency of the import map, cached once so the tests do not race to fetch them.
DENO_NO_UPDATE_CHECK=1 "$tools/bin/deno" install --quiet --frozen=false >/dev/null 2>&1 ||
  DENO_NO_UPDATE_CHECK=1 "$tools/bin/deno" install
