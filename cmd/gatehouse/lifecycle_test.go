package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/loopback"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// buildBinary compiles the real gatehouse binary once per test run, as
// the Dockerfile does: the production build, without the development
// provider (with the Dockerfile's flags, so the load test and the release
// build reuse the compiled packages).
var buildBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "gatehouse")
	cmd := exec.Command("go", "build", "-tags", "production,grpcnotrace", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

// binDir holds the binary buildBinary compiles, for this test process
// only: TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatehouse-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type buildError struct {
	out string
	err error
}

func (b *buildError) Error() string { return b.err.Error() + "\n" + b.out }

// TestBinary_SIGTERMDrainsInFlightRequestsAndExitsZero stops the real
// binary while a sign-in's callback is held, for real, at the provider: it
// is still in flight when the server stops taking connections, and must
// complete before the process exits 0. Every step waits for the event
// itself (the callback reached the provider, readiness answered 503, the
// listener closed), never for a guessed time.
func TestBinary_SIGTERMDrainsInFlightRequestsAndExitsZero(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	// The app's callback URL (its configuration, and the provider's
	// registration) names its port before the process starts: the port is
	// reserved until the test ends, so nothing else can take it meanwhile.
	port, err := loopback.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	appURL := "http://" + port.Addr()
	idp := testenv.StartIdP(t, testenv.IdPOptions{AppURLs: []string{appURL}})

	// shutdownDelay is the window in which readiness answers 503 while the
	// listener still serves: long enough that a busy machine does not
	// make the test miss it.
	const shutdownDelay = 5 * time.Second
	cmd := exec.Command(bin, "-env-file", "/nonexistent")
	cmd.Dir = t.TempDir() // runs from any working directory: templates are embedded
	cmd.Env = []string{
		"PORT=" + port.String(),
		"SESSION_SECRET=lifecycle-test-secret-0123456789abcdef",
		"ZITADEL_DOMAIN=" + idp.URL,
		"ZITADEL_CLIENT_ID=" + testenv.ClientID,
		"ZITADEL_CALLBACK_URL=" + appURL + "/auth/callback",
		"SHUTDOWN_DELAY=" + shutdownDelay.String(),
		"SHUTDOWN_TIMEOUT=20s",
		// The held callback waits for the provider through the whole
		// shutdown delay: the most the configuration allows (25 s) leaves
		// it about 20 s to spare.
		"PROVIDER_TIMEOUT=25s",
		"ADMIN_ADDR=off",
		"RATE_LIMIT_PER_MINUTE=0",
	}
	var logs testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitFor(t, appURL+"/readyz", http.StatusOK)

	// A sign-in whose callback is held at the provider's userinfo endpoint
	// (after its code exchange) until the server has stopped listening.
	b := testenv.NewBrowser(t)
	back := b.LoginAtProvider(b.StartSignIn(&testenv.App{URL: appURL}, ""), "alice", devidp.DemoPassword)
	callback, err := back.Location()
	if err != nil {
		t.Fatalf("provider's redirect back: %v", err)
	}
	reached, release := idp.HoldUserinfo()
	t.Cleanup(release)
	inflight := b.GetLater(callback.String())
	select {
	case <-reached:
	case res := <-inflight:
		t.Fatalf("the callback ended before it reached the provider's userinfo endpoint: %v %v\nlogs:\n%s", res.Response, res.Err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the callback did not reach the provider's userinfo endpoint within 30 s\nlogs:\n%s", logs.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness turns 503 while the listener still serves (the shutdown
	// delay); then the listener closes (connections refused) while the
	// callback is still held: from then on only in-flight requests run.
	probe := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	sawDraining, closed := false, false
	for deadline := time.Now().Add(shutdownDelay + 30*time.Second); !closed; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the listener was still open %v after SIGTERM (saw readiness 503: %v)\nlogs:\n%s", shutdownDelay+30*time.Second, sawDraining, logs.String())
		}
		resp, err := probe.Get(appURL + "/readyz")
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			closed = true
		case err != nil:
			// Anything else (a reset under load) says nothing yet: ask again.
		default:
			resp.Body.Close()
			sawDraining = sawDraining || resp.StatusCode == http.StatusServiceUnavailable
		}
	}
	if !sawDraining {
		t.Errorf("readiness never answered 503 during the %v shutdown delay before the listener closed", shutdownDelay)
	}
	select {
	case res := <-inflight:
		t.Fatalf("the callback ended before the provider answered it: %v %v\nlogs:\n%s", res.Response, res.Err, logs.String())
	default:
	}

	release()
	select {
	case res := <-inflight:
		switch {
		case res.Err != nil:
			t.Errorf("in-flight callback during shutdown failed: %v", res.Err)
		case res.Response.StatusCode != http.StatusSeeOther || res.Response.Header.Get("Location") != "/profile":
			t.Errorf("in-flight callback during shutdown = %s, want it completed (303 to /profile)", res.Response)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("in-flight callback did not complete within 30 s of the provider's answer\nlogs:\n%s", logs.String())
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("process exit = %v, want 0\nlogs:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("process did not exit within 30 s of the last request's end\nlogs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "stopped cleanly") {
		t.Errorf("logs lack the clean-stop line:\n%s", logs.String())
	}
}

func TestBinary_ProductionBuildRefusesDevMode(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	cmd := exec.Command(bin, "-dev", "-env-file", "/nonexistent")
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1; stderr:\n%s", err, stderr.String())
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "production build") {
		t.Errorf("stderr = %q, want one line saying this is a production build", stderr.String())
	}
	// The demo users' password is not even in the binary.
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(devidp.DemoPassword)) {
		t.Error("the production binary contains the development provider's demo password")
	}
}

func TestBinary_WrongConfigPrintsOneLinePerProblem(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	cmd := exec.Command(bin, "-env-file", "/nonexistent")
	cmd.Env = []string{"SESSION_SECRET=too-short", "ZITADEL_DOMAIN=zitadel.example"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() != 2 {
		t.Fatalf("exit = %v, want status 2", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	want := []string{"SESSION_SECRET:", "ZITADEL_DOMAIN:", "ZITADEL_CLIENT_ID:", "ZITADEL_CALLBACK_URL:"}
	if len(lines) != 1+len(want) {
		t.Fatalf("stderr has %d lines, want a header and one per problem:\n%s", len(lines), stderr.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(strings.TrimSpace(lines[i+1]), w) {
			t.Errorf("line %d = %q, want it to start with %q", i+1, lines[i+1], w)
		}
	}
	if strings.Contains(stderr.String(), "too-short") {
		t.Error("the error output repeats the secret's value")
	}
}
