#!/usr/bin/env bash
# Installs the Debian packages the cluster tier needs beside ./task setup's: podman and
# debootstrap for the images (scripts/images-build.sh), containerd, runc and the CNI plugins
# (bridge, host-local) for the nodes, iptables for kube-proxy and CNI masquerading. Idempotent:
# with everything present it returns at once. Nothing is started or enabled: the cluster runs its
# own containerd per node.
set -euo pipefail

APT_PACKAGES=(podman runc containerd containernetworking-plugins debootstrap iptables curl)

log() { printf 'cluster-setup: %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [ "$(id -u)" -ne 0 ]; then
  log "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
  exit 1
fi
log "installing Debian packages: ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
# No recommends: crun (refuses this machine's hybrid cgroups), slirp4netns, fuse-overlayfs and
# the like are for rootless podman.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
