package e2e

import (
	"fmt"
	"html"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const demoPassword = "gatehouse-demo"

// TestSignInAndOut_FullRoundTrip is scenario 1: landing → "Sign in" →
// sign-in page → provider login → profile → "Sign out" → provider
// end-session → logout success → the profile is protected again. The
// sign-out form is submitted by /static/autosubmit.js only (the test never
// clicks its fallback button), so a CSP or script that breaks it fails here.
// It runs on a desktop and on a 390 px phone (touch, mobile viewport).
func TestSignInAndOut_FullRoundTrip(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	b := newBrowser(t)
	for _, v := range []struct {
		name   string
		width  int64
		mobile bool
	}{{"desktop", 1280, false}, {"390px phone", 390, true}} {
		t.Run(v.name, func(t *testing.T) {
			tb := newUser(t, b, a.URL)
			tb.viewport(v.width, 844, v.mobile)
			signInAndOut(t, tb, a)
		})
	}
}

func signInAndOut(t *testing.T, tb *tab, a *app) {
	t.Helper()
	tb.open(a.URL + "/")
	if got := tb.text("main .status"); got != "You are not signed in." {
		t.Fatalf("landing status = %q", got)
	}
	tb.click(`main a[href="/auth/signin"]`)
	tb.waitFor(a.URL, "/auth/signin")
	tb.click("#signin")
	tb.signInAtProvider("alice", demoPassword)
	tb.waitFor(a.URL, "/profile")

	if got := tb.text("main h1"); got != "Alice Admin" {
		t.Errorf("profile name = %q, want Alice Admin", got)
	}
	if got := tb.text(".profile-head .email"); got != "alice@demo.gatehouse.localhost" {
		t.Errorf("profile e-mail = %q", got)
	}
	roles := tb.text(".roles")
	for _, r := range []string{"admin", "viewer"} {
		if !strings.Contains(roles, r) {
			t.Errorf("roles %q lack %q", roles, r)
		}
	}

	tb.click(`header form[action="/auth/logout"] button`)
	tb.waitFor(a.URL, "/auth/logout/success")
	if got := tb.text("main h1"); got != "You are signed out" {
		t.Errorf("after sign-out heading = %q", got)
	}

	tb.open(a.URL + "/profile")
	tb.waitFor(a.URL, "/auth/signin?callbackUrl=%2Fprofile")
}

// TestDeepLink_ReturnsToTheExactURLAfterSignIn is scenario 2.
func TestDeepLink_ReturnsToTheExactURLAfterSignIn(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	tb := newUser(t, newBrowser(t), a.URL)

	tb.open(a.URL + "/profile?tab=claims")
	tb.waitFor(a.URL, "/auth/signin?callbackUrl=%2Fprofile%3Ftab%3Dclaims")
	tb.click("#signin")
	tb.signInAtProvider("bob", demoPassword)
	tb.waitFor(a.URL, "/profile?tab=claims")
	if got := tb.text("main h1"); got != "Bob Viewer" {
		t.Errorf("profile name = %q", got)
	}
	if open := tb.eval(`document.getElementById("raw").open`); open != true {
		t.Errorf("?tab=claims: raw claims open = %v, want true", open)
	}
}

// TestTwoTabs_BothSignInsComplete is scenario 3: both tabs start signing in
// before either finishes; each attempt keeps its own state, so both land
// on the profile (the later sign-in's session is the one that stays).
func TestTwoTabs_BothSignInsComplete(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	first := newUser(t, newBrowser(t), a.URL)
	second := newTabLike(t, first)

	for _, tb := range []*tab{first, second} {
		tb.open(a.URL + "/auth/signin")
		tb.click("#signin")
		tb.do("provider login form", chromedp.WaitVisible(chromedp.ID("username")))
	}
	first.signInAtProvider("alice", demoPassword)
	first.waitFor(a.URL, "/profile")
	if got := first.text("main h1"); got != "Alice Admin" {
		t.Errorf("first tab: profile name = %q", got)
	}
	second.signInAtProvider("bob", demoPassword)
	second.waitFor(a.URL, "/profile")
	if got := second.text("main h1"); got != "Bob Viewer" {
		t.Errorf("second tab: profile name = %q", got)
	}
}

// TestCrossOriginLogoutForm_LeavesUserSignedIn is scenario 5: a page the
// test serves on another port auto-submits a form to POST /auth/logout.
// localhost:OTHER is same-site but cross-origin, so SameSite cookies do not
// help there and only the cross-origin check does; 127.0.0.1:OTHER is
// cross-site.
func TestCrossOriginLogoutForm_LeavesUserSignedIn(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	b := newBrowser(t)
	attacker := newAttacker(t, a.URL+"/auth/logout")

	for _, c := range []struct{ name, origin string }{
		{"same-site", "http://localhost:" + attacker.port},
		{"cross-site", "http://127.0.0.1:" + attacker.port},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := newUser(t, b, a.URL)
			tb.open(a.URL + "/auth/signin")
			tb.click("#signin")
			tb.signInAtProvider("alice", demoPassword)
			tb.waitFor(a.URL, "/profile")

			tb.expectErrorStatus(a.URL + "/auth/logout") // refused: 403
			tb.open(c.origin + "/")
			tb.waitForOrigin(a.URL) // the forged POST has been answered
			t.Logf("the forged sign-out got: %q", tb.heading())

			tb.open(a.URL + "/profile")
			if got := tb.path(); got != "/profile" {
				t.Fatalf("the forged sign-out signed the user out: /profile now goes to %s", got)
			}
			if got := tb.text("main h1"); got != "Alice Admin" {
				t.Errorf("after the forged sign-out the profile shows %q", got)
			}
		})
	}
}

type attackerSite struct{ port string }

// newAttacker serves, on one port of all loopback addresses, a page that
// posts a form to target as soon as it loads (no CSP: it is hostile).
func newAttacker(t *testing.T, target string) attackerSite {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><title>Win a prize</title></head><body>
<form method="post" action="%s"><input type="hidden" name="x" value="1"></form>
<script>document.forms[0].submit()</script></body></html>`, html.EscapeString(target))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return attackerSite{port: port}
}
