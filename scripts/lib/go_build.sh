# shellcheck shell=bash
# What the scripts that build Go binaries from pinned upstream modules into .cache/ share
# (controlplane-build.sh, tools-build.sh): finding Go, the stamp that makes them idempotent, and
# a build into a temporary directory whose binaries replace the old ones only once all are built.
# Sourced; the caller sets `name` (its log prefix), `bin`, `stamp` and `binaries` first.

log() { printf '%s: %s\n' "$name" "$*" >&2; }

# Puts Go on PATH (/usr/local/go/bin when it is not there yet), or fails naming $1, the go.mod
# whose version to install.
go_require() {
  command -v go >/dev/null && return
  if [ -x /usr/local/go/bin/go ]; then
    PATH="/usr/local/go/bin:$PATH"
  else
    log "Go toolchain not found: install Go (see $1 for the version) and retry"
    exit 1
  fi
}

# Prints the stamp of a build: a hash of stdin (the caller's pins and sources), the Go version
# and this file.
go_stamp() {
  { cat; go env GOVERSION GOOS GOARCH; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -d' ' -f1
}

# True when every binary exists and the stamp is $1.
go_up_to_date() {
  local b
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
  [ "$(cat "$stamp" 2>/dev/null)" = "$1" ]
}

# Starts a build: the stamp removed, `tmp` a fresh directory (removed at exit), `start` the time.
go_build_begin() {
  start=$(date +%s)
  mkdir -p "$bin"
  rm -f "$stamp"
  tmp=$(mktemp -d "$bin/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
}

# Ends a build: the binaries moved from $tmp into $bin, then the stamp $1 written.
go_build_finish() {
  local b
  for b in "${binaries[@]}"; do mv -f "$tmp/$b" "$bin/"; done
  echo "$1" >"$stamp"
  log "built into $bin in $(($(date +%s) - start)) s"
}
