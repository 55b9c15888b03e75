//go:build tools

// Package tools records the upstream commands this module builds, so `go mod tidy` keeps
// their dependencies in go.mod and go.sum.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
	_ "helm.sh/helm/v4/cmd/helm"
)
