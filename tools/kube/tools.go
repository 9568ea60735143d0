//go:build tools

// Package tools records the programs this module builds so that `go mod tidy` keeps their
// dependencies in go.mod/go.sum. scripts/kube.sh builds them with `go build -o ... <package>`.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
