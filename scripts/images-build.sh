#!/usr/bin/env bash
# Builds the images the cluster tier runs, with podman and from Debian packages only (no
# registry): the base images (a debian:12-slim equivalent made by debootstrap from this machine's
# apt mirror, a distroless cc-debian12 equivalent, a Deno build image, registry.k8s.io/pause from
# the pinned Kubernetes module), then the controller and agent images from the real Containerfile.
# Their executables are `deno compile`'s where its runtime download works, else the labelled
# stand-in (Containerfile, scripts/standin.ts), tagged `v<version>-standin`; EXECUTABLES=compiled
# or standin forces one. Writes docker archives of the node images and .cache/images/images.json
# (references, archives, which executables) for the cluster (tests/support/cluster.ts).
#
# Everything lives in .cache/images/: podman's storage and configuration (this machine needs
# runc, cgroupfs and lowered rlimits), the Debian root file system (rebuilt only when the suite,
# the mirror or this script change), the archives. Builds use the host network, so podman creates
# no bridge or firewall rule. Measured on 2 cores: from empty caches 167 s in a fresh clone
# (debootstrap 31 s of it; ~3 min when the machine is busy); with nothing changed 15 s; after a
# change in src/ ~1 min.
set -euo pipefail

SUITE=bookworm
PREFIX=localhost/ip-rule-operator
PAUSE_VERSION=3.10.2 # kubeadm's PauseVersion in k8s.io/kubernetes v1.36.3
PAUSE_IMAGE=registry.k8s.io/pause:$PAUSE_VERSION

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/.cache/images"
started=$(date +%s)
deno="$root/.tools/bin/deno"
log() { printf 'images-build: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "needs root (podman storage, debootstrap)"; exit 1; }
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { log "$tool is missing: run ./scripts/cluster-setup.sh"; exit 1; }
done
[ -x "$deno" ] || { log "$deno is missing: run ./task setup"; exit 1; }

# --- podman, configured for this machine and kept in the cache ------------------------------------
mkdir -p "$cache/podman"
cat >"$cache/podman/containers.conf" <<EOF
[containers]
# The machine's hard limits are below podman's defaults (1048576 open files).
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
# crun refuses this machine's hybrid cgroup v1 hierarchy; no systemd runs here.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$cache/podman/events.log"
EOF
cat >"$cache/podman/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/podman/storage"
runroot = "$cache/podman/run"
EOF
cat >"$cache/podman/registries.conf" <<EOF
unqualified-search-registries = []
short-name-mode = "enforcing"
EOF
export CONTAINERS_CONF="$cache/podman/containers.conf"
export CONTAINERS_STORAGE_CONF="$cache/podman/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$cache/podman/registries.conf"
build() { podman build --network=host --pull=never --layers "$@"; }

# --- the apt mirror this machine uses ---------------------------------------------------------------
# First URI serving `suite` (deb822 .sources or one-line sources.list).
mirror() {
  local suite=$1 file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk -v suite="$suite" '
      /^$/ { if (match_suite && uri) { print uri; exit } uri=""; match_suite=0 }
      /^URIs:/ { uri=$2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) match_suite=1 }
      END { if (match_suite && uri) print uri }' "$file" | head -n1
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' "$file"
  done
}
main_mirror=$(mirror "$SUITE" | head -n1)
security_mirror=$(mirror "$SUITE-security" | head -n1)
[ -n "$main_mirror" ] || { log "no apt source for '$SUITE' in /etc/apt: cannot debootstrap"; exit 1; }
security_mirror=${security_mirror:-$main_mirror-security}

# --- debian:12-slim equivalent: debootstrap minbase, slimmed as Debian's images are -------------------
debian_image=$PREFIX/debian:12-slim
debian_tar="$cache/debian-12-slim.tar"
debian_stamp=$(printf '%s\n' "$SUITE" "$main_mirror" "$security_mirror" "$(sed -n '/^# --- debian/,/^# --- end debian/p' "${BASH_SOURCE[0]}")" | sha256sum | cut -d' ' -f1)
if [ ! -s "$debian_tar" ] || [ "$(cat "$debian_tar.stamp" 2>/dev/null)" != "$debian_stamp" ]; then
  log "debootstrap $SUITE (minbase) from $main_mirror (~3 min)"
  rootfs=$(mktemp -d "$cache/.rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --components=main "$SUITE" "$rootfs" "$main_mirror" >"$cache/debootstrap.log" 2>&1 ||
    { log "debootstrap failed (log: $cache/debootstrap.log)"; exit 1; }
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $main_mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -f "$rootfs/etc/apt/sources.list"
  # What Debian's -slim images leave out, for the packages installed later too.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  printf 'APT::Install-Recommends "false";\nAcquire::Languages "none";\n' >"$rootfs/etc/apt/apt.conf.d/docker-slim"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$debian_tar.tmp" .
  mv "$debian_tar.tmp" "$debian_tar"
  echo "$debian_stamp" >"$debian_tar.stamp"
  rm -rf "$rootfs"
  trap - EXIT
  podman rmi -f "$debian_image" >/dev/null 2>&1 || true
fi
# --- end debian
if ! podman image exists "$debian_image"; then
  podman import -q --change 'CMD ["bash"]' "$debian_tar" "$debian_image" >/dev/null
fi

# --- distroless cc-debian12 equivalent, Deno build image, pause -------------------------------------
runtime_image=$PREFIX/distroless-cc-debian12
for target in latest nonroot; do
  build -q -f "$root/images/distroless-cc.Containerfile" --build-arg "DEBIAN_IMAGE=$debian_image" \
    --target "$target" -t "$runtime_image:$target" "$root/images" >/dev/null
done

deno_version=$("$deno" --version | head -n1 | cut -d' ' -f2)
deno_image=$PREFIX/deno:debian-$deno_version
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$(readlink -f "$deno")" "$context/deno"
cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
build -q -f "$root/images/deno.Containerfile" --build-arg "DEBIAN_IMAGE=$debian_image" \
  -t "$deno_image" "$context" >/dev/null
rm -rf "$context"/*

go_env() { PATH="/usr/local/go/bin:$PATH" go "$@"; }
kubernetes_dir=$(cd "$root/controlplane" && go_env list -m -f '{{.Dir}}' k8s.io/kubernetes)
kubernetes_version=$(cd "$root/controlplane" && go_env list -m -f '{{.Version}}' k8s.io/kubernetes)
cp "$kubernetes_dir/build/pause/linux/pause.c" "$context/pause.c"
build -q -f "$root/images/pause.Containerfile" --build-arg "DEBIAN_IMAGE=$debian_image" \
  --build-arg "VERSION=v$PAUSE_VERSION-$kubernetes_version" -t "$PAUSE_IMAGE" "$context" >/dev/null

# --- the controller and agent images from the Containerfile ----------------------------------------
executables=${EXECUTABLES:-auto}
if [ "$executables" = auto ]; then
  # deno compile downloads its runtime from dl.deno.land.
  if curl -sfI --max-time 5 https://dl.deno.land/ >/dev/null 2>&1; then executables=compiled; else executables=standin; fi
fi
case "$executables" in
  compiled) suffix= ;;
  standin) suffix=-standin ;;
  *) log "EXECUTABLES must be compiled, standin or auto, not '$executables'"; exit 2 ;;
esac
version=$("$deno" eval 'console.log(JSON.parse(Deno.readTextFileSync(Deno.args[0])).version)' "$root/deno.json")
declare -A refs
for name in controller agent; do
  refs[$name]=ghcr.io/ip-rule-operator/iprule-$name:v$version$suffix
  log "building ${refs[$name]} ($executables executables)"
  build -q -f "$root/Containerfile" --target "$name" \
    --build-arg "EXECUTABLES=$executables" --build-arg "VERSION=$version" \
    --build-arg "DENO_IMAGE=$deno_image" --build-arg "DEBIAN_IMAGE=$debian_image" \
    --build-arg "RUNTIME_IMAGE=$runtime_image" -t "${refs[$name]}" "$root" >/dev/null
done

# --- docker archives for the nodes' containerd (ctr images import), rewritten when an image changed --
mkdir -p "$cache/archives"
archives=()
for ref in "$PAUSE_IMAGE" "${refs[controller]}" "${refs[agent]}"; do
  file="$cache/archives/$(echo "$ref" | tr '/:' '__').tar"
  id=$(podman image inspect --format '{{.Id}}' "$ref")
  if [ ! -s "$file" ] || [ "$(cat "$file.id" 2>/dev/null)" != "$id" ]; then
    rm -f "$file"
    podman save -q --format docker-archive -o "$file" "$ref"
    echo "$id" >"$file.id"
  fi
  archives+=("$file")
done
cat >"$cache/images.json" <<EOF
{
  "executables": "$executables",
  "controller": "${refs[controller]}",
  "agent": "${refs[agent]}",
  "pause": "$PAUSE_IMAGE",
  "archives": ["${archives[0]}", "${archives[1]}", "${archives[2]}"]
}
EOF
log "images ready in $(($(date +%s) - started)) s: ${refs[controller]}, ${refs[agent]}, $PAUSE_IMAGE ($cache/images.json)"
