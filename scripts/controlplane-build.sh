#!/usr/bin/env bash
# Builds the test control plane from upstream Go modules (pinned in controlplane/go.mod):
# kube-apiserver and kubectl from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, and for
# the cluster tier's nodes kube-controller-manager, kube-scheduler, kubelet and kube-proxy, into
# .cache/controlplane/bin/. Idempotent: when every binary exists and the stamp matches the
# pinned versions (go.mod, go.sum, this script, scripts/lib/go_build.sh, the Go version), it
# returns at once. The Go build cache stays in its default place, so a rebuild after a bump is
# incremental.
# Measured on 2 cores: all seven from scratch (empty Go build cache) 13 min of CPU, 26 min on a
# machine busy with other builds (kube-apiserver, kubectl and etcd alone ~4.5 min, module download
# ~10 s of it); with a warm build cache (a fresh clone) 22 s; up to date ~0.01 s.
set -euo pipefail

KUBERNETES_VERSION=v1.36.3 # k8s.io/kubernetes in controlplane/go.mod
ETCD_VERSION=v3.6.8        # go.etcd.io/etcd/server/v3, as in Kubernetes' build/dependencies.yaml

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module="$root/controlplane"
bin="$root/.cache/controlplane/bin"
stamp="$bin/.stamp"
commands=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)
binaries=("${commands[@]}" etcd)
name=controlplane-build
# shellcheck source=lib/go_build.sh
. "$root/scripts/lib/go_build.sh"

go_require controlplane/go.mod
want=$(
  {
    echo "kubernetes=$KUBERNETES_VERSION etcd=$ETCD_VERSION"
    cat "$module/go.mod" "$module/go.sum" "$module/cmd/etcd/main.go" "${BASH_SOURCE[0]}"
  } | go_stamp
)
go_up_to_date "$want" && exit 0

# The module's pins must match the versions named above, or the stamp would lie.
grep -q "k8s.io/kubernetes $KUBERNETES_VERSION\$" "$module/go.mod" ||
  { log "controlplane/go.mod does not require k8s.io/kubernetes '$KUBERNETES_VERSION'"; exit 1; }
grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION\$" "$module/go.mod" ||
  { log "controlplane/go.mod does not require go.etcd.io/etcd/server/v3 '$ETCD_VERSION'"; exit 1; }

minor=${KUBERNETES_VERSION#v1.}
minor=${minor%%.*}
ldflags=(-s -w)
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=(
    -X "$pkg.gitVersion=$KUBERNETES_VERSION"
    -X "$pkg.gitMajor=1"
    -X "$pkg.gitMinor=$minor"
    -X "$pkg.gitTreeState=clean"
    -X "$pkg.buildDate=1970-01-01T00:00:00Z"
  )
done

log "building ${commands[*]} $KUBERNETES_VERSION, etcd $ETCD_VERSION (first build ~10 min)"
go_build_begin
(
  cd "$module"
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -mod=readonly -trimpath \
    -ldflags="${ldflags[*]}" -o "$tmp/" \
    "${commands[@]/#/k8s.io/kubernetes/cmd/}" ./cmd/etcd
)
go_build_finish "$want"
