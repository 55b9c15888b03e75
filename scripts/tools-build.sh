#!/usr/bin/env bash
# Builds the tools the chart, monitoring and bundle tests run, from upstream Go modules pinned in
# tools/go.mod, into .cache/tools/bin/: helm (helm.sh/helm/v4), prometheus and promtool
# (github.com/prometheus/prometheus; its Go module versions v0.3XX.Y are Prometheus 3.XX.Y) and
# bundle-validate (tools/bundle-validate/, its own module around github.com/operator-framework/
# api's validators). Idempotent like controlplane-build.sh: when every binary exists and the
# stamp matches (both modules' go.mod and go.sum, the validator's source, this script,
# scripts/lib/go_build.sh, the Go version), it returns at once. Prometheus is built with
# `remove_all_sd` (static, file and HTTP discovery only) and without its web UI assets (not in the
# Go module; the HTTP API is all the tests use).
# Measured on 2 cores with an empty Go build cache: see the log line "built ... in N s".
set -euo pipefail

HELM_VERSION=v4.3.1
PROMETHEUS_MODULE_VERSION=v0.316.0 # Prometheus 3.16.0
PROMETHEUS_VERSION=3.16.0
OPERATOR_FRAMEWORK_API_VERSION=v0.31.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module="$root/tools"
validator="$root/tools/bundle-validate"
bin="$root/.cache/tools/bin"
stamp="$bin/.stamp"
binaries=(helm prometheus promtool bundle-validate)
name=tools-build
# shellcheck source=lib/go_build.sh
. "$root/scripts/lib/go_build.sh"

go_require tools/go.mod
want=$(
  {
    echo "helm=$HELM_VERSION prometheus=$PROMETHEUS_MODULE_VERSION api=$OPERATOR_FRAMEWORK_API_VERSION"
    cat "$module/go.mod" "$module/go.sum" "${BASH_SOURCE[0]}"
    cat "$validator/go.mod" "$validator/go.sum" "$validator/main.go"
  } | go_stamp
)
go_up_to_date "$want" && exit 0

# The module's pins must match the versions named above, or the stamp would lie.
for pin in "helm.sh/helm/v4 $HELM_VERSION" "github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION"; do
  grep -q "^	$pin\$" "$module/go.mod" || { log "tools/go.mod does not require '$pin'"; exit 1; }
done
grep -q "^require github.com/operator-framework/api $OPERATOR_FRAMEWORK_API_VERSION\$" "$validator/go.mod" ||
  { log "tools/bundle-validate/go.mod does not require '$OPERATOR_FRAMEWORK_API_VERSION'"; exit 1; }

log "building helm $HELM_VERSION, prometheus and promtool $PROMETHEUS_VERSION, bundle-validate (first build several minutes)"
go_build_begin
(
  cd "$module"
  export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
  go build -mod=readonly -trimpath -o "$tmp/" \
    -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    helm.sh/helm/v4/cmd/helm
  pv=github.com/prometheus/common/version
  go build -mod=readonly -trimpath -tags remove_all_sd -o "$tmp/" \
    -ldflags="-s -w -X $pv.Version=$PROMETHEUS_VERSION -X $pv.Revision=$PROMETHEUS_MODULE_VERSION -X $pv.Branch=module -X $pv.BuildUser=tools-build -X $pv.BuildDate=19700101-00:00:00" \
    github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
  cd "$validator"
  go build -mod=readonly -trimpath -ldflags="-s -w" -o "$tmp/" .
)
go_build_finish "$want"
