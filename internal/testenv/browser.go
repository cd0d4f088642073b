package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Browser is an HTTP client with a cookie jar that sends the headers a
// browser sends on same-origin form posts.
type Browser struct {
	*http.Client
	t testing.TB
}

// NewBrowser returns a client that does not follow redirects by itself
// (Follow does), so tests can inspect each hop.
func NewBrowser(t testing.TB) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{t: t, Client: &http.Client{
		Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// Resolve sends requests for every host name ending in suffix (e.g.
// ".gatehouse.test") to loopback, port kept, as a browser started with
// --host-resolver-rules does: tests give apps and Gatehouse host names of
// their own, so cookie domains and Host-based proxies work for real.
func (b *Browser) Resolve(suffix string) *Browser {
	d := &net.Dialer{Timeout: 5 * time.Second}
	b.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(host, suffix) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return d.DialContext(ctx, network, addr)
	}}
	return b
}

// Response is a read response.
type Response struct {
	*http.Response
	Body string
	URL  string // the final URL after redirects
}

// Get fetches u without following redirects.
func (b *Browser) Get(u string) *Response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.Do(req)
}

// PostForm posts form to u as a same-origin browser form would.
func (b *Browser) PostForm(u string, form url.Values) *Response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.Do(req)
}

// Do sends req and reads the body.
func (b *Browser) Do(req *http.Request) *Response {
	b.t.Helper()
	r, err := b.TryDo(req)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// TryGet is Get that returns the error instead of failing the test: for
// requests sent from goroutines other than the test's, which must not
// call t.Fatal.
func (b *Browser) TryGet(u string) (*Response, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return b.TryDo(req)
}

// Answer is the outcome of a request sent with GetLater.
type Answer struct {
	Response *Response
	Err      error
}

// GetLater sends GET u from another goroutine (TryGet, so it never fails
// the test there); the channel yields its Answer once.
func (b *Browser) GetLater(u string) <-chan Answer {
	ch := make(chan Answer, 1)
	go func() {
		r, err := b.TryGet(u)
		ch <- Answer{r, err}
	}()
	return ch
}

// TryDo is Do that returns the error instead of failing the test.
func (b *Browser) TryDo(req *http.Request) (*Response, error) {
	resp, err := b.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body) // as Do always has: what arrived
	return &Response{Response: resp, Body: string(body), URL: req.URL.String()}, nil
}

// Follow follows redirects from r (GET for 301-303) up to 15 hops.
func (b *Browser) Follow(r *Response) *Response {
	b.t.Helper()
	for i := 0; i < 15 && r.StatusCode >= 300 && r.StatusCode < 400; i++ {
		loc, err := r.Location()
		if err != nil {
			b.t.Fatalf("redirect without Location from %s", r.URL)
		}
		r = b.Get(loc.String())
	}
	return r
}

var (
	hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	actionRe = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	idRe     = regexp.MustCompile(`name="id" value="([^"]+)"`)
)

// Form reads the first POST form's action and hidden fields from a page.
func Form(t testing.TB, body string) (string, url.Values) {
	t.Helper()
	m := actionRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form in page:\n%s", body)
	}
	vals := url.Values{}
	for _, h := range hiddenRe.FindAllStringSubmatch(body, -1) {
		vals.Add(unescape(h[1]), unescape(h[2]))
	}
	return unescape(m[1]), vals
}

func unescape(s string) string {
	r := strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#39;", "'", "&quot;", `"`, "&lt;", "<", "&gt;", ">", "&#34;", `"`)
	return r.Replace(s)
}

// StartSignIn posts the sign-in form (with callbackURL if not empty) and
// returns the redirect to the provider.
func (b *Browser) StartSignIn(app *App, callbackURL string) *Response {
	b.t.Helper()
	form := url.Values{}
	if callbackURL != "" {
		form.Set("callbackUrl", callbackURL)
	}
	return b.PostForm(app.URL+"/auth/signin/zitadel", form)
}

// LoginAtProvider follows the redirect to the provider, fills its login
// form, and returns the provider's redirect back to the app's callback
// (not yet followed).
func (b *Browser) LoginAtProvider(toProvider *Response, user, password string) *Response {
	b.t.Helper()
	if toProvider.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign-in answered %d, want 303 to the provider; body:\n%s", toProvider.StatusCode, toProvider.Body)
	}
	return b.loginOn(b.Follow(toProvider), user, password)
}

// loginOn fills the provider's login form on page and returns the
// provider's redirect back to the client (not yet followed).
func (b *Browser) loginOn(page *Response, user, password string) *Response {
	b.t.Helper()
	m := idRe.FindStringSubmatch(page.Body)
	if m == nil {
		b.t.Fatalf("no provider login form at %s (status %d):\n%s", page.URL, page.StatusCode, page.Body)
	}
	pu, _ := url.Parse(page.URL)
	login := pu.Scheme + "://" + pu.Host + "/login/username"
	resp := b.PostForm(login, url.Values{"id": {m[1]}, "username": {user}, "password": {password}})
	// Walk the provider's own redirects until one leaves it.
	for i := 0; i < 10 && resp.StatusCode >= 300 && resp.StatusCode < 400; i++ {
		loc, _ := resp.Location()
		if loc.Host != pu.Host {
			return resp
		}
		resp = b.Get(loc.String())
	}
	b.t.Fatalf("provider did not redirect back (status %d):\n%s", resp.StatusCode, resp.Body)
	return nil
}

// Login runs the whole sign-in and returns the page it lands on.
func (b *Browser) Login(app *App, user, password string) *Response {
	b.t.Helper()
	back := b.LoginAtProvider(b.StartSignIn(app, ""), user, password)
	return b.Follow(back)
}

// Cookie returns the named cookie the jar holds for u, or nil.
func (b *Browser) Cookie(u, name string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, c := range b.Jar.Cookies(pu) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// SetCookie puts a cookie in the jar for u.
func (b *Browser) SetCookie(u string, c *http.Cookie) {
	pu, _ := url.Parse(u)
	b.Jar.SetCookies(pu, []*http.Cookie{c})
}

// String describes a response for failure messages.
func (r *Response) String() string {
	return fmt.Sprintf("%s -> %d (Location %q)", r.URL, r.StatusCode, r.Header.Get("Location"))
}
