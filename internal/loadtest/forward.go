package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/devidp"
)

// The forward-auth round: GET /auth/verify as nginx asks it, with a valid
// session, next to a bare net/http handler answering the same request with
// the same identity headers, and oauth2-proxy's /oauth2/auth with a session
// made by a real login through it; then the memory of a Gatehouse that
// decided for many sessions.
const (
	Verify     = "GET /auth/verify"
	BareVerify = "bare " + Verify
	OAuth2Auth = "oauth2-proxy GET /oauth2/auth"
)

// Budgets of the forward-auth decision (issue 14).
const (
	BudgetVerifyRatio       = 0.80 // of bare net/http's requests per second
	BudgetVerifyOverOAuth2  = 4.0  // times oauth2-proxy's
	BudgetVerifyP99         = 5 * time.Millisecond
	oauth2ProxyClientID     = "oauth2-proxy"
	oauth2ProxyClientSecret = "load-test-oauth2-proxy-secret"
	// protectedURL is the original request the proxy asks about.
	protectedURL = "https://grafana.example.com/d/abc?orgId=1"
)

// Forward is the forward-auth round's measurement.
type Forward struct {
	Connections int
	// Pinning is how wrk and the servers shared the CPUs in this round.
	Pinning Pinning
	// Rounds are the pairs, each with Verify and BareVerify; a round's
	// first pair also has OAuth2Auth when oauth2-proxy is measured.
	Rounds []map[string]Throughput
	// OAuth2ProxyNote says why oauth2-proxy was not measured ("" when it was).
	OAuth2ProxyNote string
	// Memory of a Gatehouse of its own: RSS after start and after
	// Decisions decisions over Sessions sessions (cookie store).
	Sessions, Decisions int
	RSSStart, RSSAfter  int64
	DecisionsElapsed    time.Duration
}

// forwardTargets are the round's three targets; cookie and o2Cookie are
// the sessions' Cookie headers.
func forwardTargets(s *forwardServers, cookie string, o2 *oauth2Proxy, o2Cookie string) map[string]target {
	proxy := []string{"X-Original-URL: " + protectedURL, "X-Original-Method: GET"}
	t := map[string]target{
		Verify:     {name: Verify, addr: s.ghAddr, path: "/auth/verify?roles=admin", cookie: cookie, extra: proxy, pid: s.gh.pid()},
		BareVerify: {name: BareVerify, addr: s.bareAddr, path: "/verify", cookie: cookie, extra: proxy, pid: s.bare.pid()},
	}
	if o2 != nil {
		t[OAuth2Auth] = target{name: OAuth2Auth, addr: o2.addr, path: "/oauth2/auth", cookie: o2Cookie, extra: proxy,
			status: http.StatusAccepted, pid: o2.p.pid()}
	}
	return t
}

// bareVerify is the bare ceiling of a decision: the answer a minimal auth
// service gives (200, the identity headers with values of Gatehouse's
// sizes, no body) to the same request.
func bareVerify(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("X-Auth-Request-User", "300000000000000001")
	h.Set("X-Auth-Request-Email", "alice@demo.gatehouse.localhost")
	h.Set("X-Auth-Request-Preferred-Username", "alice")
	h.Set("X-Auth-Request-Groups", "admin,viewer")
	h.Set("X-Auth-Request-Access-Token", "")
	h.Set("X-Gatehouse-Assertion", bareAssertion)
	w.WriteHeader(http.StatusOK)
}

// bareAssertion has the length of a Gatehouse assertion.
var bareAssertion = strings.Repeat("a", 520)

// forwardServers are the Gatehouse and the bare server the forward-auth
// round measures: processes of its own, so that pinning them changes no
// other round's figures. A Gatehouse with the same session secret opens
// the cookies the main one issues, as every replica of a cluster does.
type forwardServers struct {
	gh, bare         *process
	ghAddr, bareAddr string
}

// startForwardServers starts both with pin's server CPUs, Gatehouse with
// its profiler on when profiled.
func startForwardServers(bin, self, issuer string, ghPort, adminPort, barePort int, pin Pinning, profiled bool) (*forwardServers, error) {
	s := &forwardServers{ghAddr: "127.0.0.1:" + strconv.Itoa(ghPort), bareAddr: "127.0.0.1:" + strconv.Itoa(barePort)}
	name, args := pin.server(bin, []string{"-env-file", os.DevNull})
	env := gatehouseEnv(ghPort, adminPort, issuer)
	if profiled {
		env = append(env, "ADMIN_PPROF=true")
	}
	var err error
	if s.gh, err = start(name, args, env); err != nil {
		return nil, err
	}
	if _, err := waitStatus(s.gh, "http://"+s.ghAddr+"/readyz", http.StatusOK, readyTimeout); err != nil {
		s.stop()
		return nil, fmt.Errorf("forward-auth gatehouse: %w", err)
	}
	name, args = pin.server(self, nil)
	if s.bare, err = start(name, args, []string{bareAddrEnv + "=" + s.bareAddr}); err != nil {
		s.stop()
		return nil, err
	}
	if _, err := waitStatus(s.bare, "http://"+s.bareAddr+"/healthz", http.StatusOK, readyTimeout); err != nil {
		s.stop()
		return nil, fmt.Errorf("forward-auth bare server: %w", err)
	}
	if err := errors.Join(pin.check("forward-auth gatehouse", s.gh.pid()), pin.check("forward-auth bare server", s.bare.pid())); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *forwardServers) stop() {
	for _, p := range []*process{s.gh, s.bare} {
		if p != nil {
			p.stop()
		}
	}
}

// forwardRound measures the round's opts.Pairs pairs of Gatehouse and the
// bare server, both with session's cookie (fresh for each pair), and
// oauth2-proxy once after the first pair.
func forwardRound(ctx context.Context, round int, targets map[string]target, session *freshSession, opts Options, pin Pinning) ([]map[string]Throughput, error) {
	fresh := func() error {
		cookie, err := session.get(ctx)
		if err != nil {
			return err
		}
		for _, name := range []string{Verify, BareVerify} {
			t := targets[name]
			t.cookie = cookie
			targets[name] = t
		}
		return nil
	}
	return pairs(ctx, round, opts, pin, targets, fresh, [][2]string{{BareVerify, Verify}}, OAuth2Auth)
}

// pairs measures opts.Pairs pairs of each of ratios ({bare, Gatehouse}),
// in pairOrder, each target after opts.Warmup in the first pair only; then
// once (first pair) the targets named in once that targets has. before,
// when set, runs before each pair and may change targets.
func pairs(ctx context.Context, round int, opts Options, pin Pinning, targets map[string]target, before func() error, ratios [][2]string, once ...string) ([]map[string]Throughput, error) {
	n := max(opts.Pairs, 1)
	out := make([]map[string]Throughput, 0, n)
	for p := range n {
		if before != nil {
			if err := before(); err != nil {
				return nil, err
			}
		}
		warmup := opts.Warmup
		if p > 0 {
			warmup = 0
		}
		var names []string
		for _, r := range ratios {
			first, second := pairOrder(round*n+p, r[0], r[1])
			names = append(names, first, second)
		}
		if p == 0 {
			names = append(names, once...)
		}
		res := map[string]Throughput{}
		for _, name := range names {
			t, ok := targets[name]
			if !ok {
				continue
			}
			th, err := hammer(ctx, t, opts.ForwardConnections, warmup, opts.Duration, pin)
			if err != nil {
				return nil, err
			}
			res[name] = th
		}
		out = append(out, res)
	}
	return out, nil
}

// oauth2Proxy is a running oauth2-proxy against the in-process provider.
type oauth2Proxy struct {
	p    *process
	addr string
}

// oauth2ProxyBinary finds oauth2-proxy: the option, PATH, the tool cache
// (scripts/tools.sh oauth2-proxy). "" when there is none.
func oauth2ProxyBinary(opt string) string {
	if opt != "" {
		return opt
	}
	if p, err := exec.LookPath("oauth2-proxy"); err == nil {
		return p
	}
	tools := os.Getenv("GATEHOUSE_TOOLS")
	if tools == "" {
		tools = "/var/cache/gatehouse-tools"
	}
	if p := filepath.Join(tools, "bin", "oauth2-proxy"); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// oauth2ProxyClient is oauth2-proxy's registration at the provider
// (oauth2-proxy needs a client secret).
func oauth2ProxyClient(port int) devidp.Client {
	return devidp.Client{ID: oauth2ProxyClientID, Secret: oauth2ProxyClientSecret,
		RedirectURIs: []string{"http://127.0.0.1:" + strconv.Itoa(port) + "/oauth2/callback"}}
}

// startOAuth2Proxy runs oauth2-proxy as its documentation sets it up for
// an OIDC provider and forward-auth (cookie sessions, X-Auth-Request-*
// headers on /oauth2/auth), with its default logging to /dev/null, on
// pin's server CPUs.
func startOAuth2Proxy(bin string, port int, issuer string, pin Pinning) (*oauth2Proxy, error) {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	name, args := pin.server(bin, []string{
		"--http-address=" + addr,
		"--provider=oidc",
		"--oidc-issuer-url=" + issuer,
		"--client-id=" + oauth2ProxyClientID,
		"--client-secret=" + oauth2ProxyClientSecret,
		"--redirect-url=http://" + addr + "/oauth2/callback",
		"--cookie-secret=" + "0123456789abcdef0123456789abcdef",
		"--cookie-secure=false",
		"--email-domain=*",
		"--scope=openid profile email",
		"--set-xauthrequest=true",
		"--skip-provider-button=true",
		"--upstream=static://200",
	})
	p, err := start(name, args, []string{"PATH=" + os.Getenv("PATH")})
	if err != nil {
		return nil, err
	}
	if _, err := waitStatus(p, "http://"+addr+"/ping", http.StatusOK, readyTimeout); err != nil {
		p.stop()
		return nil, fmt.Errorf("oauth2-proxy: %w", err)
	}
	if err := pin.check("oauth2-proxy", p.pid()); err != nil {
		p.stop()
		return nil, err
	}
	return &oauth2Proxy{p: p, addr: addr}, nil
}

// login signs in through oauth2-proxy (its /oauth2/start, the provider's
// login, its callback) and returns its session cookies as a Cookie header.
func (o *oauth2Proxy) login(ctx context.Context) (string, error) {
	app, _ := url.Parse("http://" + o.addr)
	v := newVU(app, http.DefaultTransport)
	status, loc, _, err := v.do(ctx, http.MethodGet, app.String()+"/oauth2/start?rd=%2F", nil)
	if err != nil || status != http.StatusFound || loc == nil {
		return "", fmt.Errorf("oauth2-proxy start: %d %v", status, err)
	}
	if loc, err = v.atProvider(ctx, loc, "alice", devidp.DemoPassword); err != nil {
		return "", fmt.Errorf("oauth2-proxy login: %w", err)
	}
	if status, _, body, err := v.do(ctx, http.MethodGet, loc.String(), nil); err != nil || status != http.StatusFound {
		return "", fmt.Errorf("oauth2-proxy callback: %d %v %s", status, err, body)
	}
	var parts []string
	for _, c := range v.client.Jar.Cookies(app) {
		if strings.HasPrefix(c.Name, "_oauth2_proxy") && !strings.HasPrefix(c.Name, "_oauth2_proxy_csrf") {
			parts = append(parts, c.Name+"="+c.Value)
		}
	}
	if len(parts) == 0 {
		return "", errors.New("oauth2-proxy set no session cookie")
	}
	return strings.Join(parts, "; "), nil
}

// decisionMemory signs sessions browsers in at signIn (another Gatehouse
// with the same secret: cookie sessions open on every replica, as in a
// cluster), starts a Gatehouse of its own (env), sends it decisions
// decisions, spread over the sessions in turn, from a few keep-alive
// connections (a browser keeps the cookie a refreshed or stamped session
// gets), and reads its RSS before and after: the memory of deciding, not
// of signing in.
func decisionMemory(ctx context.Context, out *Forward, bin string, env []string, appURL string, signIn *url.URL, opts Options) error {
	cookies, err := loginMany(ctx, signIn, opts.ForwardSessions, opts.VUs)
	if err != nil {
		return err
	}
	gh, err := start(bin, []string{"-env-file", os.DevNull}, env)
	if err != nil {
		return err
	}
	defer gh.stop()
	if _, err := waitStatus(gh, appURL+"/readyz", http.StatusOK, readyTimeout); err != nil {
		return fmt.Errorf("gatehouse: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // let start-up garbage be collected
	if out.RSSStart, err = rssBytes(gh.pid()); err != nil {
		return err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	begin := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= opts.ForwardDecisions || ctx.Err() != nil {
					return
				}
				s := i % len(cookies)
				mu.Lock()
				cookie := cookies[s]
				mu.Unlock()
				fresh, err := decide(ctx, client, appURL, cookie)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("decision %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(opts.ForwardDecisions))
					return
				}
				if fresh != "" {
					mu.Lock()
					cookies[s] = fresh
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	out.DecisionsElapsed = time.Since(begin)
	if err := errors.Join(firstErr, ctx.Err()); err != nil {
		return err
	}
	out.Sessions, out.Decisions = len(cookies), opts.ForwardDecisions
	out.RSSAfter, err = rssBytes(gh.pid())
	return err
}

// decide asks /auth/verify once with cookie and wants a 200; it returns
// the new cookie when the answer set one.
func decide(ctx context.Context, client *http.Client, appURL, cookie string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, appURL+"/auth/verify?roles=admin,viewer", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Cookie", cookie)
	req.Header.Set("X-Original-URL", protectedURL)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/auth/verify answered %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "gatehouse" && c.MaxAge > 0 {
			return c.Name + "=" + c.Value, nil
		}
	}
	return "", nil
}

// loginMany signs n browsers in with vus virtual users and returns their
// session cookies.
func loginMany(ctx context.Context, app *url.URL, n, vus int) ([]string, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * vus, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	out := make([]string, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range vus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := sessionCookie(ctx, app, tr)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("login %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
				out[i] = c
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(firstErr, ctx.Err())
}

// startForwardComparison starts oauth2-proxy when there is one and signs
// in through it; without one, rep says why it is not compared.
func startForwardComparison(ctx context.Context, rep *Report, opts Options, port int, issuer string, say func(string, ...any)) (*oauth2Proxy, string) {
	bin := oauth2ProxyBinary(opts.OAuth2Proxy)
	if bin == "" {
		rep.Forward.OAuth2ProxyNote = "oauth2-proxy not found: build it with `scripts/tools.sh oauth2-proxy` or pass -oauth2-proxy"
		return nil, ""
	}
	say("oauth2-proxy (%s): start and sign in through it", bin)
	o2, err := startOAuth2Proxy(bin, port, issuer, rep.Forward.Pinning)
	if err != nil {
		rep.Forward.OAuth2ProxyNote = err.Error()
		return nil, ""
	}
	cookie, err := o2.login(ctx)
	if err != nil {
		o2.p.stop()
		rep.Forward.OAuth2ProxyNote = err.Error()
		return nil, ""
	}
	return o2, cookie
}

// VerifyRatio is /auth/verify's requests per second over the bare
// handler's, round by round.
func (f Forward) VerifyRatio() Ratio { return f.ratio(Verify, BareVerify) }

// OAuth2ProxyRatio is /auth/verify's requests per second over
// oauth2-proxy's /oauth2/auth; zero when oauth2-proxy was not measured.
func (f Forward) OAuth2ProxyRatio() Ratio {
	if f.OAuth2ProxyNote != "" {
		return Ratio{}
	}
	return f.ratio(Verify, OAuth2Auth)
}

func (f Forward) ratio(name, other string) Ratio {
	r := Report{Rounds: f.Rounds}
	return r.RPSRatio(name, other)
}

// median of one target's figure over the rounds.
func (f Forward) median(name string, fig func(Throughput) float64) float64 {
	r := Report{Rounds: f.Rounds}
	return r.Median(name, fig)
}

// forwardRows writes the forward-auth figures into the report's table.
func (r *Report) forwardRows(row func(fig, budget, measured, against string)) {
	f := r.Forward
	if len(f.Rounds) == 0 {
		return
	}
	line := func(name string) string {
		rps := f.median(name, func(t Throughput) float64 { return t.RPS })
		p50 := time.Duration(f.median(name, func(t Throughput) float64 { return float64(t.P50) }))
		p99 := time.Duration(f.median(name, func(t Throughput) float64 { return float64(t.P99) }))
		cpu := time.Duration(f.median(name, func(t Throughput) float64 { return float64(t.CPUPerRequest()) }))
		return fmt.Sprintf("%.0f/s, p50 %v, p99 %v, server CPU %v", rps, p50.Round(time.Microsecond), p99.Round(time.Microsecond), cpu.Round(100*time.Nanosecond))
	}
	q := f.VerifyRatio()
	pinned := ", not pinned"
	if f.Pinning.On() {
		pinned = ", pinned: servers on CPU " + f.Pinning.Servers + ", wrk on CPU " + f.Pinning.Client
	}
	row(fmt.Sprintf("%s (valid session, roles=admin, %d connections%s)", Verify, f.Connections, pinned), fmt.Sprintf("≥ %.0f%% of bare", 100*BudgetVerifyRatio),
		line(Verify)+"; bare "+line(BareVerify), verdict(q.Median >= BudgetVerifyRatio)+": "+q.String())
	p99 := time.Duration(f.median(Verify, func(t Throughput) float64 { return float64(t.P99) }))
	row(fmt.Sprintf("%s p99 at %d connections", Verify, f.Connections), "≤ 5 ms", p99.Round(time.Microsecond).String(), verdict(p99 <= BudgetVerifyP99))
	if f.OAuth2ProxyNote != "" {
		row("oauth2-proxy v7.15.6 `/oauth2/auth`", fmt.Sprintf("/auth/verify ≥ %.0f×", BudgetVerifyOverOAuth2), "not measured", f.OAuth2ProxyNote)
	} else {
		o := f.OAuth2ProxyRatio()
		row("oauth2-proxy `/oauth2/auth` (cookie session from a login through it)", fmt.Sprintf("/auth/verify ≥ %.0f×", BudgetVerifyOverOAuth2),
			line(OAuth2Auth), fmt.Sprintf("%s: %.1f× (median of %d; %.1f–%.1f×)", verdict(o.Median >= BudgetVerifyOverOAuth2), o.Median, o.N, o.Min, o.Max))
		// The server CPU each spends beyond what net/http itself costs for
		// the same request (the bare handler's): the auth server's own work.
		cpu := func(name string) time.Duration {
			return time.Duration(f.median(name, func(t Throughput) float64 { return float64(t.CPUPerRequest()) }))
		}
		own, theirs := cpu(Verify)-cpu(BareVerify), cpu(OAuth2Auth)-cpu(BareVerify)
		if own > 0 {
			row("server CPU per decision beyond bare net/http", "—", fmt.Sprintf("Gatehouse %v, oauth2-proxy %v", own.Round(100*time.Nanosecond), theirs.Round(100*time.Nanosecond)),
				fmt.Sprintf("oauth2-proxy does %.1f× Gatehouse's work", float64(theirs)/float64(own)))
		}
	}
	row(fmt.Sprintf("RSS after %d decisions over %d sessions (a Gatehouse of its own)", f.Decisions, f.Sessions), "≤ 30 MiB",
		fmt.Sprintf("%s (%s after start; %.0f decisions/s)", mib(f.RSSAfter), mib(f.RSSStart), float64(f.Decisions)/f.DecisionsElapsed.Seconds()),
		verdict(f.RSSAfter <= BudgetRSS))
}

// pairOrder is the order of a ratio's two targets in round: the bare one
// first in even rounds, second in odd ones, so that a machine that speeds
// up or slows down during a round favours neither side of the median.
func pairOrder[T any](round int, bare, gatehouse T) (T, T) {
	if round%2 == 1 {
		return gatehouse, bare
	}
	return bare, gatehouse
}
