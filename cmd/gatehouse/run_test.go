package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestRun_BadConfigRefusesToStartNamingEachVariable(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"gatehouse", "-env-file", "/nonexistent/.env"},
		env(map[string]string{"SESSION_SECRET": "short", "PORT": "x"}), &stdout, &stderr)
	var code exitCode
	if !errors.As(err, &code) || code != 2 {
		t.Fatalf("run() = %v, want exit status 2", err)
	}
	for _, v := range []string{"SESSION_SECRET:", "PORT:", "ZITADEL_DOMAIN:", "ZITADEL_CLIENT_ID:", "ZITADEL_CALLBACK_URL:"} {
		if !strings.Contains(stderr.String(), "\n  "+v) {
			t.Errorf("stderr lacks a line for %s:\n%s", v, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "panic") || stdout.Len() != 0 {
		t.Errorf("unexpected output: stdout=%q stderr=%q", stdout.String(), stderr.String())
	}
}

func TestRun_VersionPrintsTheBuild(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"gatehouse", "version"}, {"gatehouse", "-version"}} {
		var stdout bytes.Buffer
		if err := run(context.Background(), args, env(nil), &stdout, io.Discard); err != nil {
			t.Fatal(err)
		}
		out := stdout.String()
		// A test binary is unstamped: version "dev", its Go version and platform from the build info.
		for _, want := range []string{"gatehouse dev\n", "commit:", "go:          " + runtime.Version() + "\n",
			"build tags:", "platform:    " + runtime.GOOS + "/" + runtime.GOARCH + "\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v printed no %q:\n%s", args[1:], want, out)
			}
		}
	}
}

func TestRun_DevListenAllNeedsDev(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"gatehouse", "-dev-listen-all", "-env-file", "/nonexistent"}, env(nil), io.Discard, &stderr)
	var code exitCode
	if !errors.As(err, &code) || code != 2 || !strings.Contains(stderr.String(), "-dev-listen-all needs -dev") {
		t.Fatalf("run() = %v, stderr %q", err, stderr.String())
	}
}

func TestRun_HealthcheckFailsWithoutServer(t *testing.T) {
	t.Parallel()
	_, port, _ := net.SplitHostPort(testenv.RefusingAddr(t))
	err := run(context.Background(), []string{"gatehouse", "healthcheck"}, env(map[string]string{"PORT": port}), io.Discard, io.Discard)
	var code exitCode
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("healthcheck without a server = %v, want exit 1", err)
	}
}

// startDev runs the program with -dev (and extra flags) on a port the
// kernel picks (PORT=0) until the test ends, and returns the port, its
// standard output once it is ready, and stop, which cancels it and reports
// how it exited.
func startDev(t *testing.T, extra []string, vars map[string]string) (port string, stdout *testenv.SyncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stdout = &testenv.SyncBuffer{}
	all := map[string]string{"PORT": "0", "SHUTDOWN_DELAY": "0s", "ADMIN_ADDR": "off"}
	for k, v := range vars {
		all[k] = v
	}
	done := make(chan error, 1)
	go func() {
		args := append([]string{"gatehouse", "-dev", "-dev-idp-addr", "127.0.0.1:0", "-env-file", "/nonexistent"}, extra...)
		done <- run(ctx, args, env(all), stdout, io.Discard)
	}()
	_, port = splitAddr(t, listeningAddr(t, stdout, "listening"))
	waitFor(t, "http://127.0.0.1:"+port+"/readyz", http.StatusOK)
	return port, stdout, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("run() did not return after cancel")
		}
	}
}

// TestRun_HealthcheckReadsPortFromDotenv: the server takes PORT from
// ./.env when the environment has none, so the healthcheck must probe
// that port too. Not parallel: it changes the working directory.
func TestRun_HealthcheckReadsPortFromDotenv(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	_, port := splitAddr(t, srv.Listener.Addr().String())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("PORT="+port+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if err := run(context.Background(), []string{"gatehouse", "healthcheck"}, env(nil), io.Discard, io.Discard); err != nil {
		t.Fatalf("healthcheck with PORT=%s in ./.env = %v, want success", port, err)
	}
}

func TestRun_DevModeServesAndShutsDownCleanly(t *testing.T) {
	t.Parallel()
	port, stdout, stop := startDev(t, nil, nil)
	for _, p := range []string{port, " " + port + " "} { // config trims PORT; so does the healthcheck
		if err := run(context.Background(), []string{"gatehouse", "healthcheck"}, env(map[string]string{"PORT": p}), io.Discard, io.Discard); err != nil {
			t.Errorf("healthcheck with PORT=%q against a running server = %v", p, err)
		}
	}
	for _, want := range []string{"DEVELOPMENT MODE", "alice / gatehouse-demo", "http://localhost:" + port} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("dev banner lacks %q:\n%s", want, stdout.String())
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("run() after cancel = %v, want clean exit", err)
	}
}

// -dev-key: the development provider knows only the public half of a key
// it generated, so a login succeeds only if Gatehouse's code exchange
// carries a client assertion signed with it.
func TestRun_DevKeyLogsInWithPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	port, stdout, stop := startDev(t, []string{"-dev-key"},
		map[string]string{"LOG_FORMAT": "json", "ZITADEL_CLIENT_SECRET": "ignored-in-dev-mode"})
	for _, want := range []string{"Client auth:       private_key_jwt, application key ", `"client_auth":"private_key_jwt"`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	b := testenv.NewBrowser(t)
	if r := b.Login(&testenv.App{URL: "http://localhost:" + port}, "alice", "gatehouse-demo"); r.StatusCode != http.StatusOK || !strings.HasSuffix(r.URL, "/profile") {
		t.Fatalf("login with -dev-key = %s", r)
	}
	if strings.Contains(stdout.String(), "PRIVATE KEY") {
		t.Error("the generated key reached the output")
	}
	if err := stop(); err != nil {
		t.Fatalf("run() after cancel = %v", err)
	}
}

func TestRun_DevKeyNeedsDev(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"gatehouse", "-dev-key", "-env-file", "/nonexistent"}, env(nil), io.Discard, &stderr)
	var code exitCode
	if !errors.As(err, &code) || code != 2 || !strings.Contains(stderr.String(), "-dev-key needs -dev") {
		t.Fatalf("run() = %v, stderr %q", err, stderr.String())
	}
}

// The dev banner and startup log: where the app listens (loopback by
// default, every interface with -dev-listen-all, for a pod's probes) and
// the build's identity.
func TestRun_DevModeListensWhereAsked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		flags    []string
		listenOn string // host part of the app's listen address
	}{
		{"loopback by default", nil, "127.0.0.1"},
		{"all interfaces with -dev-listen-all (in a pod)", []string{"-dev-listen-all"}, "[::]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port, stdout, stop := startDev(t, tc.flags, nil)
			for _, want := range []string{"addr=" + tc.listenOn + ":" + port, `msg="gatehouse starting" version=dev`, "go_version=" + runtime.Version()} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, stdout.String())
				}
			}
			if err := stop(); err != nil {
				t.Fatalf("run() after cancel = %v, want clean exit", err)
			}
		})
	}
}

func TestRun_DevProviderRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"gatehouse", "-dev", "-dev-idp-addr", "0.0.0.0:0", "-env-file", "/nonexistent"}, env(nil), io.Discard, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "loopback") {
		t.Fatalf("run() = %v, stderr %q; want a refusal naming loopback", err, stderr.String())
	}
}

// listenAddrRE finds a listener's address in a text or JSON log line:
// msg=listening addr=127.0.0.1:3000, "msg":"listening","addr":"[::]:3000".
var listenAddrRE = regexp.MustCompile(`msg"?[=:]"?([a-z ]+?)"?[ ,]"?addr"?[=:]"?([^"\s]+)`)

// listeningAddr waits until the log in out has the line with message msg
// ("listening", "admin listening") and returns its address: with PORT=0
// and ADMIN_ADDR=127.0.0.1:0 the kernel picks the ports and only the log
// says which.
func listeningAddr(t *testing.T, out interface{ String() string }, msg string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range listenAddrRE.FindAllStringSubmatch(out.String(), -1) {
			if m[1] == msg {
				return m[2]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q log line with an address within 30s:\n%s", msg, out.String())
	return ""
}

func splitAddr(t *testing.T, addr string) (host, port string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return host, port
}

func waitFor(t *testing.T, url string, status int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered %d", url, status)
}

// TestDev_ReplacesTheProjectAndScopes: -dev says it replaces the ZITADEL_*
// settings; a real project ID left in .env made the roles be read from a
// project the development provider never grants (the demo admin was not
// an admin), and real scopes could ask for it.
func TestDev_ReplacesTheProjectAndScopes(t *testing.T) {
	t.Parallel()
	lookup := func(k string) (string, bool) {
		switch k {
		case "ZITADEL_PROJECT_ID":
			return "123456789", true
		case "ZITADEL_SCOPES":
			return "openid profile urn:zitadel:iam:org:project:id:123456789:aud", true
		case "PORT":
			return "0", true
		}
		return "", false
	}
	d, ov, err := startDevProvider("127.0.0.1:0", "127.0.0.1", false, lookup, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	cfg, err := config.Load(context.Background(), lookup, nil, ov)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProjectID != "" || strings.Contains(strings.Join(cfg.Scopes, " "), "123456789") {
		t.Fatalf("-dev kept the environment's project: ProjectID %q, scopes %q", cfg.ProjectID, cfg.Scopes)
	}
}
