// Command gatehouse-load measures Gatehouse's performance on this machine:
// the real binary on loopback next to a bare net/http server, logins
// against an in-process provider, memory, start-up time and binary size.
// docs/PERFORMANCE.md explains the figures.
//
//	go run ./cmd/gatehouse-load            # the full run (a few minutes)
//	go run ./cmd/gatehouse-load -quick     # seconds; what the test suite runs
//	go run ./cmd/gatehouse-load -soak 5m   # steady traffic while parts fail (docs/RELIABILITY.md)
//	go run ./cmd/gatehouse-load -compare /tmp/gatehouse-old  # this tree's decisions against another build's, in pairs
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatehouse/gatehouse/internal/loadtest"
)

func main() {
	loadtest.ServeBareIfAsked() // this binary is also the bare server it measures against
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-load:", err)
		os.Exit(1)
	}
}
