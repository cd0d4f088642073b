// Package interop drives Gatehouse against an independent, OpenID
// Certified provider (panva's oidc-provider, pinned in node/package-lock.json
// and installed by scripts/test.sh's deps stage with `npm ci`), so that
// what Gatehouse does is checked against more than the provider library it
// is built with: a login through Gatehouse's real flow, several refreshes
// with rotating refresh tokens and short-lived access tokens, and sign-out.
package interop

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// startProvider runs node/provider.js for an app at appURL, with access
// tokens of ttl, and returns its issuer.
func startProvider(t *testing.T, appURL string, ttl time.Duration) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: the interop tests need Node.js 20 or newer (scripts/test.sh's deps stage checks for it)")
	}
	dir, _ := filepath.Abs("node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		t.Fatal("oidc-provider is not installed: run `npm ci` in internal/interop/node (scripts/test.sh's deps stage does)")
	}
	cmd := exec.Command(node, "provider.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GATEHOUSE_CLIENT_ID="+testenv.ClientID, "GATEHOUSE_APP_URL="+appURL,
		"ACCESS_TOKEN_TTL="+strings.TrimSuffix(ttl.String(), "s"), "ACCOUNT=interop-user")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the provider: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = stdin.Close() // provider.js exits when its stdin ends
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("provider's stderr:\n%s", stderr.String())
		}
	})
	issuer := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "issuer "); ok {
				issuer <- u
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case u := <-issuer:
		return u
	case <-exited:
		t.Fatalf("the provider exited at start:\n%s", stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the provider did not start within 30s:\n%s", stderr.String())
	}
	return ""
}

// steps counts the auth steps' outcomes (the metrics' input).
type steps struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *steps) Step(_ context.Context, step, outcome, reason string, _ time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n[strings.TrimSpace(step+" "+outcome+" "+reason)]++
}

func (s *steps) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[key]
}

var (
	formActionRe = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)
	formInputRe  = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

func TestOIDCProvider_LoginRefreshesAndSignOut(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	ln, appURL := testenv.Listen(t)
	issuer := startProvider(t, appURL, ttl)
	logs := &testenv.SyncBuffer{}
	observed := &steps{n: map[string]int{}}
	app := testenv.StartAppFor(t, ln, appURL, issuer, testenv.AppOptions{
		// ZITADEL's default scopes: the provider grants only the standard
		// ones among them (and offline_access without prompt=consent only
		// because it is configured to issue refresh tokens anyway).
		Options: server.Options{RefreshSkew: time.Second, Observer: observed, Logger: slog.New(slog.NewTextHandler(logs, nil))},
	}, true)

	br := testenv.NewBrowser(t)
	toProvider := br.StartSignIn(app, "")
	if loc, _ := toProvider.Location(); toProvider.StatusCode != http.StatusSeeOther || loc == nil || !strings.HasPrefix(loc.String(), issuer) {
		t.Fatalf("sign-in = %s, want 303 to %s", toProvider, issuer)
	}
	landed := br.Follow(toProvider) // authorize, login and consent (accepted), callback, profile
	if !strings.HasSuffix(landed.URL, "/profile") || landed.StatusCode != http.StatusOK || !strings.Contains(landed.Body, "Interop User") {
		t.Fatalf("sign-in landed on %s:\n%s\nGatehouse log:\n%s", landed, landed.Body, logs.String())
	}

	// The access token expires several times; every expiry is one refresh
	// with the rotated refresh token, whose ID token carries the original
	// nonce, and which must not name the scopes the provider did not grant.
	const rounds = 3
	for i := range rounds {
		time.Sleep(ttl + 200*time.Millisecond)
		r := br.Get(app.URL + "/profile")
		if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, "Interop User") {
			t.Fatalf("round %d after expiry: %s\nGatehouse log:\n%s", i+1, r, logs.String())
		}
		if ui := br.Get(app.URL + "/auth/userinfo"); ui.StatusCode != http.StatusOK || !strings.Contains(ui.Body, "interop-user") {
			t.Fatalf("round %d: userinfo with the refreshed access token = %d %s", i+1, ui.StatusCode, ui.Body)
		}
	}
	if got := observed.count("auth.token.refresh success"); got < rounds {
		t.Errorf("%d successful refreshes, want at least %d", got, rounds)
	}
	if strings.Contains(logs.String(), "refresh") && strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("refresh warnings:\n%s", logs.String())
	}

	// Sign-out: Gatehouse's session ends at once; the provider's end-session
	// endpoint asks to confirm, then returns to Gatehouse's logout callback.
	page := br.PostForm(app.URL+"/auth/logout", nil)
	if page.StatusCode != http.StatusOK {
		t.Fatalf("logout = %s", page)
	}
	action, fields := testenv.Form(t, page.Body)
	if !strings.HasPrefix(action, issuer) || fields.Get("id_token_hint") == "" {
		t.Fatalf("end-session form posts to %q", action)
	}
	confirm := br.Follow(br.PostForm(action, fields))
	m := formActionRe.FindStringSubmatch(confirm.Body)
	if m == nil {
		t.Fatalf("the provider's sign-out confirmation has no form (%s):\n%s", confirm, confirm.Body)
	}
	confirmFields := url.Values{"logout": {"yes"}}
	for _, in := range formInputRe.FindAllStringSubmatch(confirm.Body, -1) {
		confirmFields.Set(in[1], in[2])
	}
	target, _ := url.Parse(confirm.URL)
	actionURL, _ := target.Parse(m[1])
	done := br.Follow(br.PostForm(actionURL.String(), confirmFields))
	if !strings.HasSuffix(done.URL, "/auth/logout/success") || !strings.Contains(done.Body, "You are signed out") {
		t.Fatalf("sign-out ended at %s:\n%s", done, done.Body)
	}
	if r := br.Get(app.URL + "/profile"); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/auth/signin") {
		t.Fatalf("after sign-out, /profile = %s, want sent to sign in", r)
	}
}
