//go:build tools

// Package tools blank-imports the programs make envtest-assets builds, so
// that go.mod pins their versions.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
