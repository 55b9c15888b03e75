#!/usr/bin/env bash
# Installs the Debian packages the cluster tier needs beside ./task setup's: podman and
# debootstrap for the images (scripts/images-build.sh), containerd, runc and the CNI plugins
# (bridge, host-local) for the nodes, iptables for kube-proxy and CNI masquerading. Idempotent:
# with everything present it returns at once. Nothing is started or enabled: the cluster runs its
# own containerd per node.
set -euo pipefail

APT_PACKAGES=(podman runc containerd containernetworking-plugins debootstrap iptables curl)

log() { printf 'cluster-setup: %s\n' "$*" >&2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/scripts/apt-install.sh"
# No recommends: crun (refuses this machine's hybrid cgroups), slirp4netns, fuse-overlayfs and
# the like are for rootless podman.
apt_install "${APT_PACKAGES[@]}"
