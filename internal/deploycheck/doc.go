// Package deploycheck holds checks of the deployment files (Dockerfile, Dockerfile.dev)
// that run with `go test ./...`. The checks live in the package's tests; the schemagen
// folder is a separate module used by scripts/tools.sh.
package deploycheck
