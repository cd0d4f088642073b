package loadtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"regexp"
	"time"
)

// Request kinds a Browser records (Sample.Kind).
const (
	KindSignIn      = "sign-in start"       // POST /auth/signin/zitadel
	KindProvider    = "provider (browser)"  // the browser's own requests to the provider
	KindCallback    = "callback"            // GET /auth/callback
	KindPage        = "page view"           // GET /profile, tokens still fresh
	KindPageRefresh = "page view + refresh" // GET /profile while the access token is due for refresh
	KindSignOut     = "sign-out"            // POST /auth/logout
	KindSignedOut   = "sign-out return"     // GET /auth/logout/callback and the page it leads to
)

// Sample is one request a Browser made.
type Sample struct {
	Kind       string
	Status     int   // 0 when the request failed
	Err        error // transport error, or nil
	Start, End time.Time
}

// StepError is a request that did not answer as a working service does.
type StepError struct {
	Kind   string
	Status int // 0: no answer (Err)
	Err    error
}

func (e *StepError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %v", e.Kind, e.Err)
	}
	return fmt.Sprintf("%s: answered %d", e.Kind, e.Status)
}

func (e *StepError) Unwrap() error { return e.Err }

// ErrSessionLost is a protected page sending a signed-in browser to sign in.
var ErrSessionLost = errors.New("session lost: a protected page asked to sign in again")

// BrowserOptions describe a virtual user's browser.
type BrowserOptions struct {
	App *url.URL // Gatehouse's public origin
	// Source is the loopback address the browser connects from (on Linux
	// all of 127.0.0.0/8 is loopback), so each user can be a distinct
	// client address; the zero Addr lets the kernel choose.
	Source netip.Addr
	// Dial maps host:port to the address actually dialed (a public name
	// onto the ingress stand-in on loopback); others are dialed as is.
	Dial map[string]string
	TLS  *tls.Config      // for https origins (trusting the stand-in's certificate)
	Now  func() time.Time // default time.Now
	// Record receives every request; nil records nothing.
	Record func(Sample)
}

// Browser is a virtual user: a cookie jar, its own client address, and a
// record of each request by kind. It never follows redirects by itself.
type Browser struct {
	o         BrowserOptions
	client    *http.Client
	transport *http.Transport
}

// NewBrowser returns a browser; Close releases its connections.
func NewBrowser(o BrowserOptions) *Browser {
	if o.Now == nil {
		o.Now = time.Now
	}
	tr := NewTransport(o.Source, o.Dial, o.TLS)
	jar, _ := cookiejar.New(nil)
	return &Browser{o: o, transport: tr, client: &http.Client{
		Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Close closes the browser's idle connections.
func (b *Browser) Close() { b.transport.CloseIdleConnections() }

// NewTransport is a transport that connects from source (the zero Addr:
// any), dials dial[host:port] instead of host:port where given, and uses
// tlsConfig for https.
func NewTransport(source netip.Addr, dial map[string]string, tlsConfig *tls.Config) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if source.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: source.AsSlice()}
	}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := dial[addr]; ok {
				addr = to
			}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
}

// do sends one request and records it as kind; form (if not nil) is
// posted as a same-origin browser form.
func (b *Browser) do(ctx context.Context, kind, method, u string, form url.Values) (int, *url.URL, string, error) {
	req, err := vuRequest(ctx, method, u, form)
	if err != nil {
		return 0, nil, "", err
	}
	start := b.o.Now()
	resp, err := b.client.Do(req)
	var page []byte
	if err == nil {
		page, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	s := Sample{Kind: kind, Start: start, End: b.o.Now(), Err: err}
	if err == nil {
		s.Status = resp.StatusCode
	}
	if b.o.Record != nil {
		b.o.Record(s)
	}
	if err != nil {
		return 0, nil, "", &StepError{Kind: kind, Err: err}
	}
	loc, _ := resp.Location()
	return resp.StatusCode, loc, string(page), nil
}

func (b *Browser) fromApp(u *url.URL) bool { return u != nil && u.Host == b.o.App.Host }

var (
	formActionRe = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenRe     = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// SignIn walks a whole sign-in: Gatehouse's sign-in POST, the provider's
// login form, and the callback, which must answer with a redirect to the
// profile. Any other answer is a *StepError naming the request.
func (b *Browser) SignIn(ctx context.Context, user, password string) error {
	status, loc, _, err := b.do(ctx, KindSignIn, http.MethodPost, b.o.App.String()+"/auth/signin/zitadel", url.Values{})
	if err != nil {
		return err
	}
	if status != http.StatusSeeOther || loc == nil || b.fromApp(loc) {
		return &StepError{Kind: KindSignIn, Status: status}
	}
	var page string
	at := loc
	for range 10 { // to the provider's login form
		at = loc
		if status, loc, page, err = b.do(ctx, KindProvider, http.MethodGet, at.String(), nil); err != nil {
			return err
		}
		if status == http.StatusOK {
			break
		}
		if status != http.StatusFound && status != http.StatusSeeOther || loc == nil {
			return &StepError{Kind: KindProvider, Status: status}
		}
		loc = at.ResolveReference(loc)
	}
	m := loginIDRe.FindStringSubmatch(page)
	if m == nil {
		return &StepError{Kind: KindProvider, Status: status, Err: errors.New("no login form")}
	}
	status, loc, _, err = b.do(ctx, KindProvider, http.MethodPost, at.Scheme+"://"+at.Host+"/login/username",
		url.Values{"id": {m[1]}, "username": {user}, "password": {password}})
	for i := 0; err == nil && loc != nil && !b.fromApp(at.ResolveReference(loc)) && i < 10; i++ {
		status, loc, _, err = b.do(ctx, KindProvider, http.MethodGet, at.ResolveReference(loc).String(), nil)
	}
	if err != nil {
		return err
	}
	if loc == nil || !b.fromApp(at.ResolveReference(loc)) {
		return &StepError{Kind: KindProvider, Status: status}
	}
	status, loc, _, err = b.do(ctx, KindCallback, http.MethodGet, at.ResolveReference(loc).String(), nil)
	if err != nil {
		return err
	}
	if status != http.StatusSeeOther || loc == nil || loc.Path != "/profile" {
		return &StepError{Kind: KindCallback, Status: status}
	}
	return nil
}

// View fetches a protected page (recorded as kind): nil when it answers
// 200, ErrSessionLost when it sends the browser to sign in, else a
// *StepError.
func (b *Browser) View(ctx context.Context, kind, path string) error {
	status, loc, _, err := b.do(ctx, kind, http.MethodGet, b.o.App.String()+path, nil)
	switch {
	case err != nil:
		return err
	case status == http.StatusOK:
		return nil
	case status == http.StatusSeeOther && loc != nil && loc.Path == "/auth/signin":
		return ErrSessionLost
	}
	return &StepError{Kind: kind, Status: status}
}

// SignOut ends the session: Gatehouse's sign-out POST (which ends the
// local session at once), the provider's end-session form, and the way
// back to the signed-out page. The error says how far it got: a
// *StepError of KindSignOut means the session may still be there.
func (b *Browser) SignOut(ctx context.Context) error {
	status, loc, page, err := b.do(ctx, KindSignOut, http.MethodPost, b.o.App.String()+"/auth/logout", url.Values{})
	if err != nil {
		return err
	}
	if status == http.StatusSeeOther && loc != nil { // no provider known: signed out here only
		return nil
	}
	m := formActionRe.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil {
		return &StepError{Kind: KindSignOut, Status: status}
	}
	form := url.Values{}
	for _, h := range hiddenRe.FindAllStringSubmatch(page, -1) {
		form.Add(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	endSession, err := url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		return &StepError{Kind: KindSignOut, Status: status, Err: err}
	}
	status, loc, _, err = b.do(ctx, KindProvider, http.MethodPost, endSession.String(), form)
	for i := 0; err == nil && loc != nil && !b.fromApp(endSession.ResolveReference(loc)) && i < 10; i++ {
		status, loc, _, err = b.do(ctx, KindProvider, http.MethodGet, endSession.ResolveReference(loc).String(), nil)
	}
	if err != nil {
		return err
	}
	if loc == nil {
		return &StepError{Kind: KindProvider, Status: status}
	}
	next := endSession.ResolveReference(loc)
	for i := 0; i < 3; i++ { // the logout callback, then the signed-out page
		if status, loc, _, err = b.do(ctx, KindSignedOut, http.MethodGet, next.String(), nil); err != nil {
			return err
		}
		if status == http.StatusOK {
			if next.Path != "/auth/logout/success" {
				return &StepError{Kind: KindSignedOut, Status: status, Err: fmt.Errorf("ended at %s", next.Path)}
			}
			return nil
		}
		if status != http.StatusSeeOther || loc == nil {
			break
		}
		next = next.ResolveReference(loc)
	}
	return &StepError{Kind: KindSignedOut, Status: status}
}
