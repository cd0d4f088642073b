package e2e

import (
	"strings"
	"testing"
)

const demoPassword = "gatehouse-demo"

// TestSignInAndOut_FullRoundTrip is scenario 1: landing → "Sign in" →
// sign-in page → provider login → profile → "Sign out" → provider
// end-session → logout success → the profile is protected again. The
// sign-out form is submitted by /static/autosubmit.js only (the test never
// clicks its fallback button), so a CSP or script that breaks it fails here.
func TestSignInAndOut_FullRoundTrip(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	b := newBrowser(t)
	tb := newUser(t, b, a.URL)

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
