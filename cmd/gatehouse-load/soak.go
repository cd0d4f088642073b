package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/loadtest"
)

// soakRequested reports whether args ask for the soak (-soak DURATION)
// rather than the performance run.
func soakRequested(args []string) bool { return flagGiven(args, "soak") }

// flagGiven reports whether args (the program's name first) name the flag
// -name or --name, with or without "=value".
func flagGiven(args []string, name string) bool {
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// writeJSON writes v to path as indented JSON; an empty path writes nothing.
func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// runSoak runs `gatehouse-load -soak DURATION`: steady sign-ins, page
// views, refreshes and sign-outs against two Gatehouse instances per
// session store while the provider, Redis and one instance are restarted
// (internal/loadtest/soak.go). It prints the report and fails when a
// bound broke. docs/RELIABILITY.md keeps a 5-minute run.
func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatehouse-load -soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := fs.Duration("soak", 0, "load time, faults included (at least 30s)")
	o := loadtest.SoakDefaults(time.Minute)
	fs.IntVar(&o.VUs, "users", o.VUs, "virtual users per session store")
	cycle := fs.Duration("cycle", 0, "one fault of each kind per cycle (default: the soak's length, at most 1m)")
	fs.DurationVar(&o.TokenTTL, "token-ttl", o.TokenTTL, "access-token lifetime at the provider (more than Gatehouse's 30s refresh skew)")
	fs.StringVar(&o.RedisServer, "redis-server", "", "redis-server binary (default: from PATH)")
	jsonOut := fs.String("json", "", "also write the report to this file as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	o.Duration, o.Cycle = *d, min(*d, time.Minute)
	if *cycle > 0 {
		o.Cycle = *cycle
	}
	// The in-process provider logs every request through the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	o.Progress = stderr
	ctx, cancel := context.WithTimeout(ctx, o.Duration+5*time.Minute)
	defer cancel()
	rep, err := loadtest.RunSoak(ctx, o)
	if err != nil {
		return err
	}
	rep.Markdown(stdout)
	if err := writeJSON(*jsonOut, rep); err != nil {
		return err
	}
	if len(rep.Checks) > 0 {
		return fmt.Errorf("the soak broke %d of its bounds (listed above)", len(rep.Checks))
	}
	return nil
}
