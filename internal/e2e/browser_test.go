package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// chromiumPath is Debian's Chromium. GATEHOUSE_CHROMIUM may point at another
// installed Chromium; nothing is ever downloaded, and a missing browser
// fails the test (CI installs it; skipping would hide a broken suite).
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("GATEHOUSE_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Chromium not found at %s (%v): install it with `apt-get install chromium` (scripts/test.sh does)", path, err)
	}
	return path
}

// step bounds every single browser action: a page that never arrives fails
// the test in seconds instead of hanging it.
const step = 15 * time.Second

// shared is the one Chromium of this test process. Tests get isolation from
// fresh browser contexts (own cookies and storage, like separate people),
// not from separate processes: starting Chromium costs seconds of CPU.
var shared struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	err    error
}

// newBrowser returns the shared headless Chromium, started on first use with
// exactly the flags the issue lists and a fresh profile directory;
// TestMain stops it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	shared.once.Do(func() {
		profile, err := os.MkdirTemp(binDir, "chromium-profile-")
		if err != nil {
			shared.err = err
			return
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
			chromedp.ExecPath(path),
			chromedp.Flag("headless", true),
			chromedp.Flag("no-sandbox", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			// The forward-auth tests name Gatehouse and the protected apps
			// login.gatehouse.test, app.gatehouse.test, ...: cookie domains
			// and host-based proxies then work as in a cluster.
			chromedp.Flag("host-resolver-rules", "MAP *."+testenv.LabDomain+" 127.0.0.1"),
			chromedp.UserDataDir(profile),
		)
		ctx, cancel := chromedp.NewContext(alloc)
		shared.ctx, shared.cancel = ctx, func() { cancel(); cancelAlloc() }
		// The first Run starts the browser; it must not carry a timeout.
		if err := chromedp.Do(ctx); err != nil {
			shared.err = fmt.Errorf("start Chromium: %w", err)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.ctx
}

// stopBrowser ends the shared Chromium (TestMain, after the tests).
func stopBrowser() {
	if shared.cancel != nil {
		shared.cancel()
	}
}

// tab is one browser tab with a watch on its console, log and CSP.
type tab struct {
	t   *testing.T
	ctx context.Context
	own string // the app's origin: its pages must be clean
	mu  sync.Mutex
	url string // current main-frame URL, to say where a problem happened
	// problems are console errors, uncaught exceptions, error log entries
	// and CSP violations; every tab fails its test on any (see watch).
	problems []string
	// notes are everything else the console said, shown on failure.
	notes []string
	// failed closes on the first problem of a strict tab, so a step that
	// waits for a page a CSP blocked fails at once, not at its time limit.
	strict   bool
	failed   chan struct{}
	failOnce sync.Once
	// expected are URLs whose error status the test asked for (a 403 or 404
	// page): Chromium logs those documents as failed loads.
	expected map[string]bool
	// canary is set while cspBlocksInlineScript provokes a violation on
	// purpose; what it provokes lands in canarySeen instead of problems.
	canary     bool
	canarySeen []string
}

// newUser opens a tab in a fresh browser context: its own cookies, like a
// separate person on the same machine. Problems on pages of origin own fail
// the test when it ends.
func newUser(t *testing.T, browser context.Context, own string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	return openTab(t, ctx, cancel, own, true)
}

// newTabLike opens another tab that shares other's cookies.
func newTabLike(t *testing.T, other *tab) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(other.ctx)
	return openTab(t, ctx, cancel, other.own, true)
}

// cspBinding is called by the securitypolicyviolation listener below; a
// DevTools binding is not subject to the page's CSP.
const cspBinding = "__gatehouseCSPViolation"

const cspListener = `document.addEventListener("securitypolicyviolation", function (e) {
  globalThis.` + cspBinding + `(JSON.stringify({directive: e.effectiveDirective, blocked: e.blockedURI,
    page: e.documentURI, source: e.sourceFile, line: e.lineNumber, sample: e.sample, disposition: e.disposition}));
}, true);`

func openTab(t *testing.T, ctx context.Context, cancel context.CancelFunc, own string, strict bool) *tab {
	t.Helper()
	tb := &tab{t: t, ctx: ctx, own: own, strict: strict, failed: make(chan struct{})}
	if err := chromedp.Listen(ctx, tb.observe); err != nil {
		cancel()
		t.Fatalf("open tab: %v", err)
	}
	if _, err := chromedp.Call(ctx, runtime.AddBinding, runtime.AddBindingParams{Name: cspBinding}); err != nil {
		t.Fatalf("add CSP binding: %v", err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener}); err != nil {
		t.Fatalf("add CSP listener: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if strict {
			tb.assertClean()
		}
	})
	return tb
}

// observe records what the page reports. Chromium reports a CSP
// violation three ways (a securitypolicyviolation event, a Log entry, a
// console error); all count. Errors on the provider's pages (the stand-in
// for ZITADEL, e.g. its missing favicon) are not Gatehouse's and are only
// noted.
func (tb *tab) observe(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	report := func(serious bool, where, msg string) {
		if serious && (tb.isOwn(tb.url) || tb.isOwn(where)) {
			tb.problem(msg)
		} else {
			tb.notes = append(tb.notes, msg)
		}
	}
	switch ev := ev.(type) {
	case *page.EventFrameNavigated:
		if ev.Frame != nil && ev.Frame.ParentID == "" {
			tb.url = ev.Frame.URL
		}
	case *runtime.EventConsoleAPICalled:
		serious := ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert ||
			ev.Type == runtime.ConsoleAPICalledTypeWarning
		report(serious, "", fmt.Sprintf("console.%s on %s: %s", ev.Type, redact(tb.url), consoleText(ev.Args)))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		report(true, d.URL, fmt.Sprintf("uncaught exception on %s: %s", redact(tb.url), text))
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		serious := e.Level == cdplog.EntryLevelError || e.Level == cdplog.EntryLevelWarning
		if e.Source == cdplog.EntrySourceNetwork && tb.expected[e.URL] {
			serious = false
		}
		report(serious, e.URL, fmt.Sprintf("log %s/%s on %s: %s (%s)", e.Source, e.Level, redact(tb.url), e.Text, redact(e.URL)))
	case *runtime.EventBindingCalled:
		if ev.Name == cspBinding {
			tb.problem("CSP violation: " + ev.Payload)
		}
	}
}

// expectErrorStatus lets the document at u answer with an error status.
func (tb *tab) expectErrorStatus(u string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.expected == nil {
		tb.expected = map[string]bool{}
	}
	tb.expected[u] = true
}

// problem records p; tb.mu is held.
func (tb *tab) problem(p string) {
	if tb.canary && strings.Contains(p, "script-src") {
		tb.canarySeen = append(tb.canarySeen, p)
		return
	}
	tb.problems = append(tb.problems, p)
	if tb.strict {
		tb.failOnce.Do(func() { close(tb.failed) })
	}
}

// stepContext bounds one step in time and ends it early when a strict tab
// sees a problem.
func (tb *tab) stepContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(tb.ctx, step)
	go func() {
		select {
		case <-tb.failed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// abortIfProblem fails the test at once with the tab's problems.
func (tb *tab) abortIfProblem() {
	tb.t.Helper()
	select {
	case <-tb.failed:
		tb.t.Fatalf("the page reported a problem (page %s, heading %q):\n%s", redact(tb.location()), tb.heading(), strings.Join(tb.Problems(), "\n"))
	default:
	}
}

func (tb *tab) isOwn(u string) bool {
	return tb.own != "" && (u == tb.own || strings.HasPrefix(u, tb.own+"/"))
}

func consoleText(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case len(a.Value) > 0:
			var s string
			if json.Unmarshal(a.Value, &s) == nil {
				parts = append(parts, s)
			} else {
				parts = append(parts, string(a.Value))
			}
		case a.Description != "":
			parts = append(parts, a.Description)
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

// Problems returns what the page reported so far.
func (tb *tab) Problems() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.problems...)
}

func (tb *tab) assertClean() {
	tb.t.Helper()
	for _, p := range tb.Problems() {
		tb.t.Errorf("browser reported: %s", p)
	}
	if tb.t.Failed() {
		tb.mu.Lock()
		for _, n := range tb.notes {
			tb.t.Logf("browser console: %s", n)
		}
		tb.mu.Unlock()
	}
}

// do runs actions with a per-step time limit.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := tb.stepContext()
	defer cancel()
	// A tab in the background gets no animation frames; bring it forward.
	if _, err := chromedp.Call(ctx, page.BringToFront, cdp.Empty{}); err != nil {
		tb.t.Fatalf("%s: bring tab to front: %v", what, err)
	}
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.abortIfProblem()
		tb.t.Fatalf("%s: %v (page %s, heading %q)", what, err, redact(tb.location()), tb.heading())
	}
}

func run[T any](tb *tab, what string, a chromedp.Action[T]) T {
	tb.t.Helper()
	ctx, cancel := tb.stepContext()
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		tb.abortIfProblem()
		tb.t.Fatalf("%s: %v (page %s)", what, err, redact(tb.location()))
	}
	return v
}

func (tb *tab) open(u string) { tb.t.Helper(); tb.do("open "+u, chromedp.Navigate(u)) }

func (tb *tab) click(sel string) {
	tb.t.Helper()
	tb.do("click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return strings.TrimSpace(run(tb, "read "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)))
}

func (tb *tab) eval(js string) any {
	tb.t.Helper()
	return run(tb, "evaluate", chromedp.Evaluate[any](js))
}

// location is the current URL, or "" when the tab cannot say.
func (tb *tab) location() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return ""
	}
	return u
}

func (tb *tab) heading() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
	defer cancel()
	h, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("h1")||{}).textContent||""`))
	return strings.TrimSpace(h)
}

// waitFor waits until the tab's URL, minus the origin, is want (path and
// query), and the page has loaded.
func (tb *tab) waitFor(origin, want string) {
	tb.t.Helper()
	err := eventually(step, func() error {
		tb.abortIfProblem()
		last := tb.location()
		u, err := url.Parse(last)
		if err != nil || !strings.HasPrefix(last, origin) || u.RequestURI() != want {
			return fmt.Errorf("at %q", redact(last))
		}
		if state := tb.readyState(); state != "complete" {
			return fmt.Errorf("at %q, page %s", redact(last), state)
		}
		return nil
	})
	if err != nil {
		tb.t.Fatalf("waiting for %s%s: %v (heading %q)", origin, want, err, tb.heading())
	}
}

// cspBlocksInlineScript adds an inline <script> to the current page and
// reports whether the browser refused to run it and reported the
// violation: proof that a strict CSP is in force on this very page, so a
// page that loses its policy (or gains 'unsafe-inline') fails.
func (tb *tab) cspBlocksInlineScript() bool {
	tb.t.Helper()
	tb.mu.Lock()
	tb.canary, tb.canarySeen = true, nil
	tb.mu.Unlock()
	defer func() {
		tb.mu.Lock()
		tb.canary = false
		tb.mu.Unlock()
	}()
	ran := run(tb, "inline script canary", chromedp.Evaluate[bool](`(() => {
  window.__gatehouseCanary = false;
  const s = document.createElement("script");
  s.textContent = "window.__gatehouseCanary = true";
  document.head.appendChild(s);
  s.remove();
  return window.__gatehouseCanary;
})()`))
	reported := eventually(3*time.Second, func() error {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, p := range tb.canarySeen {
			if strings.Contains(p, `"directive":"script-src-elem"`) {
				return nil
			}
		}
		return errors.New("no script-src-elem violation reported")
	}) == nil
	return !ran && reported
}

// waitForOrigin waits until the tab shows a loaded page of origin.
func (tb *tab) waitForOrigin(origin string) {
	tb.t.Helper()
	err := eventually(step, func() error {
		tb.abortIfProblem()
		if u := tb.location(); !strings.HasPrefix(u, origin+"/") {
			return fmt.Errorf("at %q", redact(u))
		}
		if state := tb.readyState(); state != "complete" {
			return fmt.Errorf("page %s", state)
		}
		return nil
	})
	if err != nil {
		tb.t.Fatalf("waiting for a page of %s: %v", origin, err)
	}
}

// path is the current URL's path and query.
func (tb *tab) path() string {
	u, err := url.Parse(tb.location())
	if err != nil {
		return ""
	}
	return u.RequestURI()
}

func (tb *tab) readyState() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
	defer cancel()
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState`))
	return state
}

// redact drops query values from u: failure messages must not carry a
// callback's code or state.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.RawQuery == "" {
		return u
	}
	q := p.Query()
	for k := range q {
		if k == "code" || k == "state" || k == "id_token_hint" {
			q.Set(k, "REDACTED")
		}
	}
	p.RawQuery = q.Encode()
	return p.String()
}

// signInAtProvider fills the development provider's login form.
func (tb *tab) signInAtProvider(user, password string) {
	tb.t.Helper()
	tb.do("provider login form",
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`), chromedp.NodeVisible),
	)
}

// viewport sets the tab's CSS viewport; mobile adds touch and the mobile
// flag, as a phone would.
func (tb *tab) viewport(width, height int64, mobile bool) {
	tb.t.Helper()
	var opts []chromedp.EmulateViewportOption
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
	}
	// Hidden scrollbars keep the layout width the viewport width, as on
	// phones and in screenshots.
	if _, err := chromedp.Call(tb.ctx, emulation.SetScrollbarsHidden, emulation.SetScrollbarsHiddenParams{Hidden: true}); err != nil {
		tb.t.Fatalf("hide scrollbars: %v", err)
	}
	tb.do("set viewport", chromedp.EmulateViewport(width, height, opts...))
}

// settle waits for running CSS transitions (a scheme switch animates
// colours), so the audit measures what a person ends up seeing.
func (tb *tab) settle() {
	tb.t.Helper()
	run(tb, "settle", chromedp.Evaluate[chromedp.Void](
		`Promise.all(document.getAnimations().map(a => a.finished)).then(() => new Promise(r => requestAnimationFrame(() => r())))`,
		chromedp.EvalAwaitPromise))
}

// screenshot saves a PNG in the test's artifact directory and, when
// GATEHOUSE_SCREENSHOTS names a folder, there too: the full page, or with
// screenOnly what fits the viewport (a phone's screen).
func (tb *tab) screenshot(name string, screenOnly bool) {
	tb.t.Helper()
	tb.settle()
	shot := chromedp.FullScreenshot(100)
	if screenOnly {
		shot = chromedp.CaptureScreenshot()
	}
	png := run(tb, "screenshot "+name, shot)
	dirs := []string{tb.t.ArtifactDir()}
	if d := os.Getenv("GATEHOUSE_SCREENSHOTS"); d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join(repoRoot(tb.t), d)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			tb.t.Fatal(err)
		}
	}
}

// newContextIn opens a tab context in a fresh browser context of browser.
func newContextIn(browser context.Context) (context.Context, context.CancelFunc) {
	return chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
}
