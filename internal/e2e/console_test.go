package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBrowserWatch_ReportsCSPViolationsAndConsoleErrors proves the watch
// every tab carries can see what scenario 4 looks for: a page under a strict
// CSP whose inline script, inline style and cross-origin form post are
// blocked, and which logs a console error. If the watch went blind (an
// event renamed, a domain not enabled), this test fails instead of the
// others passing vacuously.
func TestBrowserWatch_ReportsCSPViolationsAndConsoleErrors(t *testing.T) {
	t.Parallel()
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(elsewhere.Close)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/submit.js":
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `console.error("boom"); document.querySelector("form").submit();`)
		default:
			w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; form-action 'self'")
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><html lang="en"><head><title>broken</title></head><body>
<p style="color:red">inline style</p><script>document.title = "inline ran"</script>
<form method="post" action="%s/end"><button>go</button></form>
<script src="/submit.js"></script></body></html>`, elsewhere.URL)
		}
	}))
	t.Cleanup(broken.Close)

	b := newBrowser(t)
	ctx, cancel := newContextIn(b)
	tb := openTab(t, ctx, cancel, broken.URL, false)
	tb.open(broken.URL + "/")

	want := []string{`"directive":"script-src-elem"`, `"directive":"style-src-attr"`, `"directive":"form-action"`, "console.error", "boom"}
	err := eventually(5*time.Second, func() error {
		all := strings.Join(tb.Problems(), "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				return fmt.Errorf("no %s in:\n%s", w, all)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if title := tb.eval(`document.title`); title != "broken" {
		t.Errorf("the inline script ran (title %q): the CSP was not enforced", title)
	}
	for _, p := range tb.Problems() {
		t.Logf("seen: %s", p)
	}
}

// TestEveryPage_NoConsoleErrorsOrCSPViolations is scenario 4: it walks
// every page of the flow as a person would (the sign-out form submitted by
// its script, never by the test) while each tab watches
// Runtime.consoleAPICalled, Log.entryAdded, uncaught exceptions and
// securitypolicyviolation events; any of them on a Gatehouse page fails
// the test. On each page it also proves the CSP is enforced: an inline
// script must be refused. A CSP that blocks the sign-in or sign-out form
// fails here (the walk stops at a violation); one that allows inline
// scripts fails the canary.
func TestEveryPage_NoConsoleErrorsOrCSPViolations(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	b := newBrowser(t)
	visited := 0
	check := func(tb *tab) {
		t.Helper()
		visited++
		if !tb.cspBlocksInlineScript() {
			t.Errorf("%s: an inline script was not refused and reported: no strict CSP in force", tb.path())
		}
	}

	alice := newUser(t, b, a.URL)
	alice.open(a.URL + "/")
	check(alice)
	alice.click(`main a[href="/auth/signin"]`)
	alice.waitFor(a.URL, "/auth/signin")
	check(alice)
	alice.click("#signin")
	alice.signInAtProvider("alice", demoPassword)
	alice.waitFor(a.URL, "/profile")
	check(alice)
	alice.click("#raw summary")
	if open := alice.eval(`document.getElementById("raw").open`); open != true {
		t.Errorf("raw claims did not open on click")
	}
	for _, path := range []string{"/profile?tab=claims", "/admin", "/"} {
		alice.open(a.URL + path)
		check(alice)
	}
	alice.open(a.URL + "/auth/userinfo")
	if body := alice.text("body"); !strings.Contains(body, `"sub"`) {
		t.Errorf("/auth/userinfo shows %q", shorten(body, 200))
	}
	alice.open(a.URL + "/profile")
	alice.click(`header form[action="/auth/logout"] button`)
	alice.waitFor(a.URL, "/auth/logout/success")
	check(alice)
	for _, path := range []string{
		"/auth/signin?error=state_mismatch",
		"/auth/error?error=access_denied",
		"/auth/logout/success?provider=unavailable",
		"/auth/logout/error",
	} {
		alice.open(a.URL + path)
		check(alice)
	}
	alice.expectErrorStatus(a.URL + "/no-such-page")
	alice.open(a.URL + "/no-such-page")
	check(alice)

	bob := newUser(t, b, a.URL)
	signIn(t, bob, a, "bob")
	bob.expectErrorStatus(a.URL + "/admin")
	bob.open(a.URL + "/admin")
	check(bob)
	if got := bob.text("main h1"); got != "You do not have access to this page" {
		t.Errorf("bob on /admin sees %q", got)
	}

	for _, tb := range []*tab{alice, bob} {
		for _, p := range tb.Problems() {
			t.Errorf("browser reported: %s", p)
		}
	}
	t.Logf("checked %d pages", visited)
}
