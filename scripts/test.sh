#!/usr/bin/env bash
# Runs the named test tiers with Deno's test runner, one JUnit report per tier, then prints
# the real totals as one line `N passed, N failed`. Exits non-zero when any test failed.
#   unit      src/, net/, ffi/, scripts/, bench/ *_test.ts (no privileges; loopback only)
#   netns     tests/netns/                        (root: network namespaces)
#   apiserver tests/apiserver/                    (real kube-apiserver + etcd, helm, promtool,
#                                                  OLM validators; all built on demand)
#   e2e       tests/e2e/                          (root + control plane + Prometheus)
#   cluster   tests/cluster/                      (root; kubelet nodes, podman images: built here)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="$root/.tools/bin:$PATH" DENO_NO_UPDATE_CHECK=1
results="$root/.cache/test-results"
rm -rf "$results" && mkdir -p "$results"

status=0
for tier in "$@"; do
  case "$tier" in
    unit) paths=(src net ffi scripts bench) flags=(--allow-read --allow-env --allow-net=127.0.0.1) ;;
    netns) paths=(tests/netns) flags=(-A) ;;
    apiserver) paths=(tests/apiserver) flags=(-A) ;;
    e2e) paths=(tests/e2e) flags=(-A) ;;
    cluster) paths=(tests/cluster) flags=(-A) ;;
    *) echo "test.sh: unknown tier '$tier' (unit, netns, apiserver, e2e, cluster)" >&2; exit 2 ;;
  esac
  if [ -z "$(find "${paths[@]}" -name '*_test.ts' 2>/dev/null | head -n1)" ]; then
    echo "== $tier: no tests yet"
    continue
  fi
  if [ "$tier" = apiserver ] || [ "$tier" = e2e ] || [ "$tier" = cluster ]; then
    ./scripts/controlplane-build.sh || { echo "test.sh: control-plane build failed" >&2; status=1; }
    # helm, prometheus, promtool and bundle-validate for the chart, monitoring and bundle tests.
    ./scripts/tools-build.sh || { echo "test.sh: tools build failed" >&2; status=1; }
  fi
  if [ "$tier" = cluster ]; then
    # The tests fail naming what is missing when these fail.
    { ./scripts/cluster-setup.sh && ./scripts/images-build.sh; } ||
      { echo "test.sh: cluster setup or image build failed" >&2; status=1; }
  fi
  echo "== $tier"
  # A hung tier fails (exit 124/137) and the others still run and get counted.
  timeout --kill-after=30s "${TIER_TIMEOUT:-1800}" \
    deno test "${flags[@]}" --junit-path="$results/$tier.xml" "${paths[@]}"
  code=$?
  [ "$code" -eq 124 ] || [ "$code" -eq 137 ] &&
    echo "test.sh: tier $tier timed out after ${TIER_TIMEOUT:-1800} s" >&2
  echo "$code" >"$results/$tier.exit"
  [ "$code" -eq 0 ] || status=1
done

deno run --allow-read scripts/test_summary.ts "$results" || status=1
exit $status
