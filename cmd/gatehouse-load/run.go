package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/internal/loadtest"
)

// run parses flags, runs the load test and prints the report.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if soakRequested(args) {
		return runSoak(ctx, args, stdout, stderr)
	}
	if compareRequested(args) {
		return runCompare(ctx, args, stdout, stderr)
	}
	fs := flag.NewFlagSet("gatehouse-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("quick", false, "a run of seconds with small counts (the test suite's variant)")
	o := loadtest.Full()
	if len(args) > 1 {
		for _, a := range args[1:] {
			if a == "-quick" || a == "--quick" || a == "-quick=true" {
				o = loadtest.Quick()
			}
		}
	}
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "throughput rounds (each measures every target once, bare and Gatehouse alternating)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "measured time per target per round")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "unmeasured time before each measurement")
	fs.IntVar(&o.Connections, "conns", o.Connections, "keep-alive connections per target")
	fs.IntVar(&o.Logins, "logins", o.Logins, "logins with the cookie store (RSS is read after a tenth and after all)")
	fs.IntVar(&o.RedisLogins, "redis-logins", o.RedisLogins, "logins with the Redis store (0 skips the Redis phase)")
	fs.IntVar(&o.VUs, "vus", o.VUs, "virtual users logging in at once, each with its own cookie jar")
	fs.IntVar(&o.Startups, "startups", o.Startups, "exec-to-ready measurements")
	fs.StringVar(&o.RedisServer, "redis-server", "", "redis-server binary (default: from PATH)")
	fs.StringVar(&o.ProfileDir, "profile", "", "also write CPU profiles of the logins, of GET /profile and of GET /auth/verify (verify-cpu.pprof, pinned like its round, and the bare server's verify-bare-cpu.pprof to compare per request) and of its cached opaque bearer token (bearer-opaque-cpu.pprof, bearer-opaque-bare-cpu.pprof), and heap profiles after the logins and after the decision load (heap-after-verify.pprof: what the collector scans there), into this directory (Gatehouse runs with ADMIN_PPROF=true); read them with go tool pprof")
	fs.IntVar(&o.ProfileSecs, "profile-seconds", o.ProfileSecs, "length of each CPU profile with -profile (1 to 29)")
	fs.IntVar(&o.ForwardConnections, "forward-conns", o.ForwardConnections, "keep-alive connections for the forward-auth round (/auth/verify, its bare ceiling, oauth2-proxy)")
	fs.IntVar(&o.ForwardSessions, "forward-sessions", o.ForwardSessions, "sessions of the forward-auth memory phase")
	fs.IntVar(&o.ForwardDecisions, "forward-decisions", o.ForwardDecisions, "decisions of the forward-auth memory phase, spread over its sessions")
	fs.IntVar(&o.Pairs, "pairs-per-round", o.Pairs, "pairs of the forward-auth and bearer decisions with their bare ceilings in each round (their ratios are medians over all pairs)")
	fs.StringVar(&o.OAuth2Proxy, "oauth2-proxy", "", "oauth2-proxy binary to compare /auth/verify with (default: PATH, then the tool cache; scripts/tools.sh oauth2-proxy builds it)")
	fs.BoolVar(&o.Pin, "pin", o.Pin, "run the forward-auth and bearer rounds' wrk on the last CPU and the servers they measure (bare, Gatehouse, oauth2-proxy) on the others, with taskset, where there are 2 or more CPUs; other rounds are never pinned")
	jsonOut := fs.String("json", "", "also write the raw measurements to this file as JSON")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "give up when the run takes longer than this after building the binary")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if o.ProfileDir != "" && (o.ProfileSecs < 1 || o.ProfileSecs > 29) {
		return fmt.Errorf("-profile-seconds must be from 1 to 29 (the admin listener's write timeout is 30 s)")
	}
	if o.Rounds < 1 || o.Duration <= 0 || o.Connections < 1 || o.Logins < 1 || o.VUs < 1 || o.Startups < 1 || o.RedisLogins < 0 {
		return fmt.Errorf("rounds, duration, conns, logins, vus and startups must be positive")
	}
	if o.ForwardConnections < 1 || o.ForwardSessions < 1 || o.ForwardDecisions < o.ForwardSessions || o.Pairs < 1 {
		return fmt.Errorf("forward-conns, forward-sessions and pairs-per-round must be positive, forward-decisions at least forward-sessions")
	}
	// The in-process provider logs every request through the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	o.Progress = stderr
	rep, err := loadtest.Run(ctx, o)
	if err != nil {
		return err
	}
	rep.Markdown(stdout)
	if err := writeJSON(*jsonOut, rep); err != nil {
		return err
	}
	return nil
}
