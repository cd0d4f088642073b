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
