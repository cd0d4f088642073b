package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/loadtest"
)

func TestMain(m *testing.M) {
	loadtest.ServeBareIfAsked() // the load test starts this test binary as its bare server
	os.Exit(m.Run())
}

// TestRun_QuickReportsEveryFigure runs the documented command's quick
// variant end to end (build, provider, real binary, bare server, logins,
// Redis) so the load test never rots. It checks that every figure was
// measured and is plausible, not that budgets are met: speed goals live
// in the benchmarks and in docs/PERFORMANCE.md.
func TestRun_QuickReportsEveryFigure(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.json")
	profiles := filepath.Join(t.TempDir(), "profiles")
	var stdout, stderr bytes.Buffer
	// -timeout bounds the run after the build: a cold build cache on a
	// loaded machine takes what it takes (within go test's -timeout).
	if err := run(context.Background(), []string{"gatehouse-load", "-quick", "-timeout", "5m", "-json", out, "-profile", profiles}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"| GET /profile requests/s |", "| RP-side CPU per login", "| exec to /readyz 200", "| binary size"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadtest.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 1 {
		t.Fatalf("rounds = %d, want 1", len(rep.Rounds))
	}
	for name, th := range rep.Rounds[0] {
		if th.Requests < 10 || th.RPS <= 0 || th.P50 <= 0 || th.P99 < th.P50 {
			t.Errorf("%s: implausible %+v", name, th)
		}
	}
	for _, p := range loadtest.Pairs {
		if q := rep.RPSRatio(p[0], p[1]); q.Median <= 0 {
			t.Errorf("%s: no ratio to its ceiling", p[0])
		}
	}
	if rep.Logins.Count != loadtest.Quick().Logins || rep.Logins.PerSec <= 0 || rep.Logins.GatehouseCPU <= 0 ||
		rep.Logins.BackChannel <= 0 || rep.Logins.BackChannel >= rep.Logins.Gatehouse {
		t.Errorf("logins: implausible %+v", rep.Logins)
	}
	if rep.RSSStart < 1<<20 || rep.RSSAfterAll < rep.RSSStart/2 {
		t.Errorf("RSS start %d, after logins %d", rep.RSSStart, rep.RSSAfterAll)
	}
	if rep.RedisNote == "" && (rep.RedisLogins.Count != loadtest.Quick().RedisLogins || rep.RedisRSSAfter <= 0) {
		t.Errorf("Redis phase: implausible %+v, RSS %d", rep.RedisLogins, rep.RedisRSSAfter)
	}
	if len(rep.Startup) != 1 || rep.Startup[0] <= 0 || rep.Startup[0] > 30*time.Second {
		t.Errorf("start-up times %v", rep.Startup)
	}
	for _, name := range []string{"logins-cpu.pprof", "heap-after-logins.pprof", "profile-cpu.pprof", "verify-cpu.pprof", "verify-bare-cpu.pprof"} {
		f, err := os.Open(filepath.Join(profiles, name))
		if err != nil {
			t.Errorf("-profile wrote no %s: %v", name, err)
			continue
		}
		// pprof's format is a gzipped protocol buffer.
		zr, err := gzip.NewReader(f)
		if err == nil {
			var n int64
			n, err = io.Copy(io.Discard, zr)
			if err == nil && n == 0 {
				err = io.ErrUnexpectedEOF
			}
		}
		f.Close()
		if err != nil {
			t.Errorf("%s is not a profile: %v", name, err)
		}
	}
	// The forward-auth round: /auth/verify and its bare ceiling measured
	// in every pair, oauth2-proxy once where the tool cache has it (it is
	// optional here), and the memory phase decided for every session.
	f := rep.Forward
	pairs := loadtest.Quick().Pairs
	if len(f.Rounds) != pairs || f.VerifyRatio().N != pairs || f.VerifyRatio().Median <= 0 || f.Connections != loadtest.Quick().ForwardConnections {
		t.Errorf("forward-auth round: %+v", f)
	}
	for i, m := range f.Rounds {
		if m[loadtest.Verify].Requests < 10 || m[loadtest.BareVerify].Requests < 10 {
			t.Errorf("forward-auth pair %d: %+v", i+1, m)
		}
		if _, ok := m[loadtest.OAuth2Auth]; ok && i > 0 {
			t.Errorf("forward-auth pair %d measured oauth2-proxy again", i+1)
		}
	}
	for _, want := range []string{"| GET /auth/verify (valid session", fmt.Sprintf(" pair %d |", pairs), fmt.Sprintf("median of %d;", pairs)} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	// The round says how it shared the CPUs: pinned (the default, where
	// the machine allows) or why not.
	if p := f.Pinning; p.On() == (p.Note != "") || !strings.Contains(stdout.String(), "CPUs: the forward-auth round (/auth/verify, its bare ceiling, oauth2-proxy) and the bearer round "+p.String()) {
		t.Errorf("forward-auth pinning %+v not reported as such:\n%s", p, stdout.String())
	}
	if f.OAuth2ProxyNote == "" {
		if th := f.Rounds[0][loadtest.OAuth2Auth]; th.Requests < 10 || f.OAuth2ProxyRatio().Median <= 0 {
			t.Errorf("oauth2-proxy: implausible %+v", th)
		}
	} else if strings.Contains(f.OAuth2ProxyNote, "oauth2-proxy: ") || !strings.Contains(f.OAuth2ProxyNote, "not found") {
		t.Errorf("oauth2-proxy is there but was not measured: %s", f.OAuth2ProxyNote)
	}
	if f.Sessions != loadtest.Quick().ForwardSessions || f.Decisions != loadtest.Quick().ForwardDecisions || f.RSSAfter < f.RSSStart/2 || f.RSSStart < 1<<20 {
		t.Errorf("forward-auth memory: %d sessions, %d decisions, RSS %d → %d", f.Sessions, f.Decisions, f.RSSStart, f.RSSAfter)
	}
	// The bearer round: both decisions and their bare ceilings measured.
	bt := rep.Bearer
	if bt.Pinning != f.Pinning {
		t.Errorf("bearer round pinned %+v, forward-auth round %+v: the same CPUs for both", bt.Pinning, f.Pinning)
	}
	if len(bt.Rounds) != pairs || bt.JWTRatio().N != pairs || bt.JWTRatio().Median <= 0 || bt.OpaqueRatio().Median <= 0 || bt.Tokens["jwt"] < 100 || bt.Tokens["opaque"] < 20 {
		t.Fatalf("bearer round: %+v", bt)
	}
	for i, m := range bt.Rounds {
		for _, name := range []string{loadtest.BearerJWT, loadtest.BareBearerJWT, loadtest.BearerOpaque, loadtest.BareBearerOpaque} {
			if th := m[name]; th.Requests < 10 || th.CPUPerRequest() <= 0 {
				t.Errorf("pair %d, %s: implausible %+v", i+1, name, th)
			}
		}
	}
	for _, want := range []string{"| " + loadtest.BearerJWT + " (token of", "| " + loadtest.BearerOpaque + " (token of"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	if rep.BinaryBytes < 1<<20 || !rep.BinaryStatic {
		t.Errorf("binary %d bytes, static %v", rep.BinaryBytes, rep.BinaryStatic)
	}
}
