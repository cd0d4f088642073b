package e2e

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// The forward-auth browser tests: Gatehouse signs people in for two other
// apps, the echo upstream behind real nginx (app.gatehouse.test) and real
// Caddy (app2.gatehouse.test), each configured as docs/FORWARD-AUTH.md
// says (testenv.ForwardLab), Gatehouse itself at login.gatehouse.test
// with COOKIE_DOMAIN=.gatehouse.test. Chromium resolves those names to
// loopback (--host-resolver-rules).

// echoSeen is what the echo upstream got, from the page Chromium shows
// for its JSON answer.
func echoSeen(t *testing.T, tb *tab) testenv.EchoRequest {
	t.Helper()
	raw, _ := tb.eval(`document.body.innerText`).(string)
	var e testenv.EchoRequest
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		t.Fatalf("not the echo upstream's answer at %s: %q", redact(tb.location()), raw)
	}
	return e
}

// TestForwardAuth_SignInOnceForEveryApp: a deep link of the nginx app →
// Gatehouse's sign-in page (one click) → the provider's login → back on
// the deep link, identity headers at the app; the Caddy app then works
// without signing in again (one session cookie for the domain); a
// script's request without the cookie gets 401; identity headers a script
// adds never reach the app; sign-out at Gatehouse ends access to both.
func TestForwardAuth_SignInOnceForEveryApp(t *testing.T) {
	t.Parallel()
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{})
	tb := newUser(t, newBrowser(t), lab.Login)
	deep := lab.NginxURL + "/reports/2026?q=a%20b&tab=2"

	tb.open(deep)
	tb.waitFor(lab.Login, "/auth/signin?rd="+url.QueryEscape(deep))
	tb.click("#signin")
	tb.signInAtProvider("alice", demoPassword)
	tb.waitFor(lab.NginxURL, "/reports/2026?q=a%20b&tab=2")
	e := echoSeen(t, tb)
	if e.Header.Get(forward.HeaderUser) != "300000000000000001" || e.Header.Get(forward.HeaderGroups) != "admin,viewer" ||
		e.Header.Get(forward.HeaderAssertion) == "" {
		t.Errorf("the app got %v", e.Header)
	}

	tb.open(lab.CaddyURL + "/dashboards/7")
	tb.waitFor(lab.CaddyURL, "/dashboards/7")
	if e := echoSeen(t, tb); e.Header.Get(forward.HeaderUser) != "300000000000000001" || e.Host != strings.TrimPrefix(lab.CaddyURL, "http://") {
		t.Errorf("the second app got %s %v", e.Host, e.Header)
	}

	// A script on the app's page: its own request carries the session
	// cookie; without it (credentials: "omit"), 401, never a redirect.
	for _, tc := range []struct {
		credentials string
		status      float64
	}{{"same-origin", 200}, {"omit", 401}} {
		raw := run(tb, "fetch", chromedp.Evaluate[string](`fetch("/api/items", {credentials: "`+tc.credentials+`",
			headers: {"X-Auth-Request-User": "evil", "X-Auth-Request-Groups": "admin"}})
			.then(async r => JSON.stringify({status: r.status, redirected: r.redirected, body: await r.text()}))`, chromedp.EvalAwaitPromise))
		var got struct {
			Status     float64
			Redirected bool
			Body       string
		}
		if err := json.Unmarshal([]byte(raw), &got); err != nil {
			t.Fatalf("fetch result %q: %v", raw, err)
		}
		if got.Status != tc.status || got.Redirected {
			t.Errorf("fetch with credentials %s: %v", tc.credentials, got)
		}
		if tc.status == 200 {
			var seen testenv.EchoRequest
			_ = json.Unmarshal([]byte(got.Body), &seen)
			if seen.Header.Get(forward.HeaderUser) != "300000000000000001" || seen.Header.Get(forward.HeaderGroups) != "admin,viewer" {
				t.Errorf("identity headers a script sent reached the app: %v", seen.Header)
			}
		}
	}

	// Sign-out: the app's "Sign out" link opens Gatehouse's page.
	tb.open(lab.Login + "/auth/logout")
	tb.click("#signout")
	tb.waitFor(lab.Login, "/auth/logout/success")
	for _, app := range []string{lab.NginxURL, lab.CaddyURL} {
		tb.open(app + "/after")
		tb.waitFor(lab.Login, "/auth/signin?rd="+url.QueryEscape(app+"/after"))
	}
}

// TestForwardAuth_MissingRoleGetsGatehousesPage: bob lacks the admin role
// the apps' /admin/ needs: each proxy shows Gatehouse's 403 page, styled
// by Gatehouse's stylesheet under the page's own CSP (a violation fails
// the test), with links back to Gatehouse.
func TestForwardAuth_MissingRoleGetsGatehousesPage(t *testing.T) {
	t.Parallel()
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{})
	tb := newUser(t, newBrowser(t), lab.Login)
	tb.open(lab.CaddyURL + "/")
	tb.click("#signin")
	tb.signInAtProvider("bob", demoPassword)
	tb.waitFor(lab.CaddyURL, "/")
	for _, app := range []string{lab.NginxURL, lab.CaddyURL} {
		tb.expectErrorStatus(app + "/admin/users")
		tb.open(app + "/admin/users")
		tb.waitFor(app, "/admin/users")
		if h := tb.text("main h1"); h != "You do not have access to this page" {
			t.Errorf("%s: heading %q", app, h)
		}
		if styled := tb.eval(`getComputedStyle(document.querySelector("main .panel")).borderTopLeftRadius !== "0px"`); styled != true {
			t.Errorf("%s: the 403 page is unstyled: Gatehouse's stylesheet did not load", app)
		}
		if href := tb.eval(`document.querySelector('nav a[href$="/auth/logout"]').href`); href != lab.Login+"/auth/logout" {
			t.Errorf("%s: sign-out link %v", app, href)
		}
	}
}

// TestForwardAuth_SkipSignInPage: with SIGNIN_PAGE=skip the browser goes
// from the protected app straight to the provider, without Gatehouse's
// page, and back to the deep link.
func TestForwardAuth_SkipSignInPage(t *testing.T) {
	t.Parallel()
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{Env: config.Overrides{"SIGNIN_PAGE": "skip"}})
	tb := newUser(t, newBrowser(t), lab.Login)
	tb.open(lab.NginxURL + "/d/abc?orgId=1")
	tb.signInAtProvider("alice", demoPassword)
	tb.waitFor(lab.NginxURL, "/d/abc?orgId=1")
	if e := echoSeen(t, tb); e.Header.Get(forward.HeaderUser) != "300000000000000001" {
		t.Errorf("the app got %v", e.Header)
	}
}
