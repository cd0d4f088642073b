package e2e

import (
	"testing"
)

// TestScreenshots renders the pages a README reader wants to see, at a
// desktop width and at a 390 px phone width, into the test's artifact
// directory (and GATEHOUSE_SCREENSHOTS, see the package doc). The pages are
// checked while at it, so a screenshot never shows a broken page.
func TestScreenshots(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	b := newBrowser(t)

	alice := newUser(t, b, a.URL)
	alice.viewport(1200, 800, false)
	alice.open(a.URL + "/")
	alice.screenshot("landing", false)
	alice.open(a.URL + "/auth/signin")
	alice.screenshot("signin", false)
	signIn(t, alice, a, "alice")
	alice.screenshot("profile", false)
	alice.colorScheme("dark")
	alice.screenshot("profile-dark", true)
	alice.colorScheme("light")
	alice.open(a.URL + "/admin")
	alice.screenshot("admin", false)
	alice.viewport(390, 844, true)
	alice.open(a.URL + "/profile")
	alice.screenshot("profile-mobile", true)
	alice.viewport(1200, 800, false)
	alice.open(a.URL + "/profile")
	alice.click(`header form[action="/auth/logout"] button`)
	alice.waitFor(a.URL, "/auth/logout/success")
	alice.screenshot("signed-out", false)
	alice.expectErrorStatus(a.URL + "/no-such-page")
	alice.open(a.URL + "/auth/error?error=state_mismatch")
	alice.screenshot("error", false)

	bob := newUser(t, b, a.URL)
	bob.viewport(1200, 800, false)
	signIn(t, bob, a, "bob")
	bob.expectErrorStatus(a.URL + "/admin")
	bob.open(a.URL + "/admin")
	bob.screenshot("admin-forbidden", false)
	bob.viewport(390, 844, true)
	bob.open(a.URL + "/")
	bob.screenshot("landing-mobile", true)
}

// signIn walks the sign-in from the sign-in page to the profile.
func signIn(t *testing.T, tb *tab, a *app, user string) {
	t.Helper()
	tb.open(a.URL + "/auth/signin")
	tb.click("#signin")
	tb.signInAtProvider(user, demoPassword)
	tb.waitFor(a.URL, "/profile")
}
