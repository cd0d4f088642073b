package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/devidp"
)

// vuAgent marks the virtual users' requests, so the provider can tell
// them from Gatehouse's own calls (token, userinfo, keys, discovery).
const vuAgent = "gatehouse-load-vu"

// provider is the in-process OpenID provider, timing the requests
// Gatehouse makes to it.
type provider struct {
	url     string
	handler http.Handler
	srv     *http.Server
	back    atomic.Int64 // nanoseconds spent answering Gatehouse's own calls
}

func startProvider(clientID string, appURLs []string, others ...devidp.Client) (*provider, error) {
	ln, issuer, err := devidp.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	idp, err := devidp.New(devidp.Options{Issuer: issuer, Clients: append([]devidp.Client{appClient(clientID, appURLs)}, others...)})
	if err != nil {
		ln.Close()
		return nil, err
	}
	p := &provider{url: issuer, handler: idp.Handler()}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	p.handler.ServeHTTP(w, r)
	if !strings.Contains(r.UserAgent(), vuAgent) {
		p.back.Add(int64(time.Since(t0)))
	}
}

func (p *provider) close() { _ = p.srv.Close() }

// Logins is the login phase's measurement.
type Logins struct {
	Count   int
	Elapsed time.Duration
	PerSec  float64
	// Wall time summed over all logins: in requests to Gatehouse, of which
	// BackChannel was Gatehouse waiting for the provider (token, userinfo,
	// keys), and in the browser's requests to the provider (login form).
	Gatehouse, BackChannel, Provider time.Duration
	GatehouseCPU                     time.Duration // the Gatehouse process's CPU time
}

// ShareInGatehouse is the part of a login's wall time spent in Gatehouse's
// own work (its requests' time minus its waits for the provider).
func (l Logins) ShareInGatehouse() float64 {
	total := l.Gatehouse + l.Provider
	if total <= 0 {
		return 0
	}
	return float64(l.Gatehouse-l.BackChannel) / float64(total)
}

// CPUPerLogin is Gatehouse's CPU time per login.
func (l Logins) CPUPerLogin() time.Duration {
	if l.Count == 0 {
		return 0
	}
	return l.GatehouseCPU / time.Duration(l.Count)
}

// vu is a virtual user: a browser with its own cookie jar.
type vu struct {
	client *http.Client
	app    *url.URL
	gh, fr time.Duration
}

func newVU(app *url.URL, transport http.RoundTripper) *vu {
	jar, _ := cookiejar.New(nil)
	return &vu{app: app, client: &http.Client{
		Jar: jar, Transport: transport, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

var loginIDRe = regexp.MustCompile(`name="id" value="([^"]+)"`)

// do sends one request, times it against Gatehouse or the provider, and
// returns the status, Location and body.
func (v *vu) do(ctx context.Context, method, u string, form url.Values) (int, *url.URL, string, error) {
	req, err := vuRequest(ctx, method, u, form)
	if err != nil {
		return 0, nil, "", err
	}
	t0 := time.Now()
	resp, err := v.client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.URL.Host == v.app.Host {
		v.gh += time.Since(t0)
	} else {
		v.fr += time.Since(t0)
	}
	if err != nil {
		return 0, nil, "", err
	}
	loc, _ := resp.Location()
	return resp.StatusCode, loc, string(b), nil
}

// login walks one whole sign-in: Gatehouse's sign-in POST, the provider's
// authorize redirect and login form, and Gatehouse's callback, which must
// answer with a session cookie and a redirect to the profile.
func (v *vu) login(ctx context.Context, user, password string) error {
	status, loc, _, err := v.do(ctx, http.MethodPost, v.app.String()+"/auth/signin/zitadel", url.Values{})
	if err != nil || status != http.StatusSeeOther || loc == nil {
		return fmt.Errorf("sign-in: %d %v", status, err)
	}
	if loc, err = v.atProvider(ctx, loc, user, password); err != nil {
		return err
	}
	status, loc, _, err = v.do(ctx, http.MethodGet, loc.String(), nil)
	if err != nil || status != http.StatusSeeOther || loc == nil || loc.Path != "/profile" {
		return fmt.Errorf("callback: %d to %v, %v", status, loc, err)
	}
	return nil
}

// atProvider follows the redirect loc to the provider's login form, fills
// it, and returns the provider's redirect back to the app (its callback).
func (v *vu) atProvider(ctx context.Context, loc *url.URL, user, password string) (*url.URL, error) {
	var (
		status int
		page   string
		err    error
	)
	var at *url.URL // the provider page last fetched
	for range 10 {  // to the provider's login form
		at = loc
		if status, loc, page, err = v.do(ctx, http.MethodGet, at.String(), nil); err != nil {
			return nil, fmt.Errorf("provider: %w", err)
		}
		if status == http.StatusOK {
			break
		}
		if loc == nil {
			return nil, fmt.Errorf("provider answered %d without Location", status)
		}
	}
	m := loginIDRe.FindStringSubmatch(page)
	if m == nil {
		return nil, errors.New("no login form at the provider")
	}
	status, loc, _, err = v.do(ctx, http.MethodPost, at.Scheme+"://"+at.Host+"/login/username",
		url.Values{"id": {m[1]}, "username": {user}, "password": {password}})
	for i := 0; err == nil && loc != nil && loc.Host != v.app.Host && i < 10; i++ {
		status, loc, _, err = v.do(ctx, http.MethodGet, loc.String(), nil)
	}
	if err != nil || loc == nil || loc.Host != v.app.Host {
		return nil, fmt.Errorf("provider did not send the browser back: %d %v", status, err)
	}
	return loc, nil
}

// sessionCookie logs a new browser in and returns its session cookie as
// a Cookie header value.
func sessionCookie(ctx context.Context, app *url.URL, transport http.RoundTripper) (string, error) {
	v := newVU(app, transport)
	if err := v.login(ctx, "alice", devidp.DemoPassword); err != nil {
		return "", err
	}
	for _, c := range v.client.Jar.Cookies(app) {
		if c.Name == "gatehouse" {
			return c.Name + "=" + c.Value, nil
		}
	}
	return "", errors.New("no session cookie after login")
}

// freshFor is how long a session cookie serves measurements: Gatehouse
// re-stamps a session once a minute (the idle stamp) and sends the new
// cookie back, which a browser stores and wrk cannot; from then on every
// request with the old cookie would seal a new one. Half the minute
// leaves room for the measurement that starts just before it ends.
const freshFor = 30 * time.Second

// freshSession is a signed-in browser's cookie for wrk: get signs in
// again once the cookie is freshFor old.
type freshSession struct {
	login  func(context.Context) (string, error)
	now    func() time.Time
	cookie string
	at     time.Time // when the login that made cookie began
}

func newFreshSession(app *url.URL) *freshSession {
	return &freshSession{now: time.Now, login: func(ctx context.Context) (string, error) {
		return sessionCookie(ctx, app, http.DefaultTransport)
	}}
}

// get returns the cookie, a new one when it is freshFor old.
func (f *freshSession) get(ctx context.Context) (string, error) {
	if f.cookie != "" && f.now().Sub(f.at) < freshFor {
		return f.cookie, nil
	}
	return f.renew(ctx)
}

// renew signs in again.
func (f *freshSession) renew(ctx context.Context) (string, error) {
	at := f.now()
	c, err := f.login(ctx)
	if err != nil {
		return "", err
	}
	f.cookie, f.at = c, at
	return c, nil
}

// runLogins makes n logins with vus virtual users against the Gatehouse
// process pid at app.
func runLogins(ctx context.Context, app *url.URL, idp *provider, pid, vus, n int) (Logins, error) {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 2 * vus,
		IdleConnTimeout:     30 * time.Second,
	}
	defer transport.CloseIdleConnections()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		out      Logins
		firstErr error
	)
	back0 := idp.back.Load()
	cpu0, err := cpuTime(pid)
	if err != nil {
		return Logins{}, err
	}
	begin := time.Now()
	for range vus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := newVU(app, transport)
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					break
				}
				user := "alice"
				if i%2 == 0 {
					user = "bob"
				}
				if err := v.login(ctx, user, devidp.DemoPassword); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("login %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(n)) // stop everyone
					break
				}
			}
			mu.Lock()
			out.Gatehouse += v.gh
			out.Provider += v.fr
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.Elapsed = time.Since(begin)
	cpu1, err := cpuTime(pid)
	if err := errors.Join(firstErr, err, ctx.Err()); err != nil {
		return Logins{}, err
	}
	out.Count = n
	out.PerSec = float64(n) / out.Elapsed.Seconds()
	out.BackChannel = time.Duration(idp.back.Load() - back0)
	out.GatehouseCPU = cpu1 - cpu0
	return out, nil
}

// vuRequest is a virtual user's request; form (if not nil) is posted as a
// same-origin browser form.
func vuRequest(ctx context.Context, method, u string, form url.Values) (*http.Request, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", vuAgent)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	return req, nil
}
