package e2e

import (
	_ "embed"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// audit.js returns the problems a browser can see on the current page.
//
//go:embed audit.js
var auditJS string

// sitePage is one page of Gatehouse as someone sees it.
type sitePage struct {
	who  string // "", "alice" (admin) or "bob" (no admin role)
	path string
	fail bool // answers with an error status (403, 404)
}

// pages are all pages a person can land on (the sign-out page that posts
// to the provider is walked by the flow tests: it leaves at once).
var sitePages = []sitePage{
	{"", "/", false},
	{"", "/auth/signin", false},
	{"", "/auth/signin?callbackUrl=%2Fadmin&error=state_mismatch", false},
	{"", "/auth/error?error=access_denied", false},
	{"", "/auth/logout/success", false},
	{"", "/auth/logout/success?provider=unavailable", false},
	{"", "/auth/logout/error", false},
	{"", "/no-such-page", true},
	{"alice", "/", false},
	{"alice", "/profile", false},
	{"alice", "/profile?tab=claims", false},
	{"alice", "/admin", false},
	{"bob", "/admin", true},
	{"bob", "/no-such-page", true},
}

// visitPages opens every page, signed in as its user, and calls check on it.
func visitPages(t *testing.T, a *app, check func(tb *tab, p sitePage)) {
	t.Helper()
	b := newBrowser(t)
	tabs := map[string]*tab{}
	for _, p := range sitePages {
		tb := tabs[p.who]
		if tb == nil {
			tb = newUser(t, b, a.URL)
			if p.who != "" {
				signIn(t, tb, a, p.who)
			}
			tabs[p.who] = tb
		}
		if p.fail {
			tb.expectErrorStatus(a.URL + p.path)
		}
		tb.open(a.URL + p.path)
		if got := tb.path(); got != p.path {
			t.Fatalf("%s: landed on %s", p.path, got)
		}
		check(tb, p)
	}
}

// TestPages_AccessibleAndResponsive audits every page in Chromium at a
// desktop width in light and dark colour schemes and at a 390 px phone
// width: lang, landmarks, one h1, labels and names, no inline script or
// style, WCAG AA contrast of every text, 24 px touch targets, no sideways
// scrolling, and a visible focus indicator on every control reached with
// the Tab key.
func TestPages_AccessibleAndResponsive(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	visitPages(t, a, func(tb *tab, p sitePage) {
		name := p.path
		if p.who != "" {
			name = p.who + " " + p.path
		}
		for _, v := range []struct {
			label  string
			width  int64
			mobile bool
			scheme string
		}{
			// Contrast depends on the scheme, overflow on the width:
			// three combinations cover both.
			{"desktop light", 1280, false, "light"},
			{"desktop dark", 1280, false, "dark"},
			{"390px light", 390, true, "light"},
		} {
			tb.viewport(v.width, 844, v.mobile)
			tb.colorScheme(v.scheme)
			tb.settle()
			for _, problem := range run(tb, "audit", chromedp.Evaluate[[]string](auditJS)) {
				t.Errorf("%s (%s): %s", name, v.label, problem)
			}
		}
		tb.colorScheme("light")
		tb.viewport(1280, 844, false)
		checkFocusVisible(t, tb, name)
	})
}

// checkFocusVisible tabs through the page like a keyboard user and wants a
// visible focus indicator (an outline of at least 2 px, or a box shadow)
// on each control it reaches. A focusin listener notes the style of each
// focused control, so all Tab presses go in one round trip.
func checkFocusVisible(t *testing.T, tb *tab, name string) {
	t.Helper()
	n := run(tb, "start focus walk", chromedp.Evaluate[int](`(() => {
  window.__gatehouseFocus = [];
  document.addEventListener("focusin", (e) => {
    const el = e.target, cs = getComputedStyle(el);
    const outline = cs.outlineStyle !== "none" && parseFloat(cs.outlineWidth) >= 2;
    const shadow = cs.boxShadow && cs.boxShadow !== "none";
    window.__gatehouseFocus.push(outline || shadow ? "" :
      "no visible focus on " + el.tagName.toLowerCase() + " " + (el.textContent || "").trim().slice(0, 30));
  });
  if (document.activeElement) document.activeElement.blur();
  window.scrollTo(0, 0);
  return [...document.querySelectorAll("a[href], button, summary, input:not([type=hidden]), [tabindex='0']")]
    .filter((el) => el.checkVisibility()).length;
})()`))
	presses := make([]chromedp.Action[chromedp.Void], n)
	for i := range presses {
		presses[i] = chromedp.KeyEvent(kbTab)
	}
	tb.do("press Tab", presses...)
	seen := run(tb, "focus styles", chromedp.Evaluate[[]string](`window.__gatehouseFocus`))
	if len(seen) < n {
		t.Errorf("%s: %d Tab presses reached %d controls", name, n, len(seen))
	}
	for _, s := range seen {
		if s != "" {
			t.Errorf("%s: %s", name, s)
		}
	}
}

const kbTab = "\t"

// colorScheme emulates prefers-color-scheme.
func (tb *tab) colorScheme(scheme string) {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	}); err != nil {
		tb.t.Fatalf("emulate %s scheme: %v", scheme, err)
	}
}
