package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/internal/loadtest"
)

// compareRequested reports whether args ask to compare this tree's build
// with another one (-compare BINARY) rather than for the performance run.
func compareRequested(args []string) bool { return flagGiven(args, "compare") }

// runCompare measures this tree's Gatehouse against another build on the
// forward-auth decision, in pairs (loadtest.Compare).
func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatehouse-load -compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := loadtest.CompareOptions{Pairs: 40, PairTime: 2 * time.Second, Connections: 64, Pin: true}
	fs.StringVar(&o.Other, "compare", "", "the other build's gatehouse binary (go build -tags production,grpcnotrace -trimpath -ldflags '-s -w' ./cmd/gatehouse in a worktree of the other commit)")
	fs.IntVar(&o.Pairs, "pairs", o.Pairs, "pairs of measurements")
	fs.DurationVar(&o.PairTime, "pair-time", o.PairTime, "each build's measurement in a pair (whole seconds)")
	fs.IntVar(&o.Connections, "forward-conns", o.Connections, "keep-alive connections")
	fs.BoolVar(&o.Pin, "pin", o.Pin, "run wrk on the last CPU and both builds on the others, with taskset, as the forward-auth round does")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "give up when the run takes longer than this after building the binary")
	jsonOut := fs.String("json", "", "also write the raw measurements to this file as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	// The in-process provider logs every request through the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	o.Progress = stderr
	rep, err := loadtest.Compare(ctx, o)
	if err != nil {
		return err
	}
	rep.Markdown(stdout)
	return writeJSON(*jsonOut, rep)
}
