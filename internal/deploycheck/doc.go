// Package deploycheck holds checks of the deployment files (Dockerfile, Dockerfile.dev)
// that run with `go test ./...`, and TestTiltDevPodLogin, which scripts/deploy-check.sh
// runs inside the network namespace of the Tilt dev image it starts (it skips elsewhere).
// The checks live in the package's tests; the schemagen folder is a separate module used
// by scripts/tools.sh.
package deploycheck
