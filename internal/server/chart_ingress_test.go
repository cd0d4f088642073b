package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/loadtest"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// chartIngressEnv is the ConfigMap the chart renders with its defaults and
// an Ingress (charts/gatehouse/ci/ingress-values.yaml), as scripts/gen-k8s.sh
// writes it; the deploy check's k8s-sync stage fails when it is stale.
const chartIngressEnv = "testdata/chart-ingress-configmap.yaml"

// readConfigMapData reads the data of a rendered ConfigMap: the chart
// writes every value with Helm's quote, which is Go's %q.
func readConfigMapData(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	inData := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "data:":
			inData = true
		case !inData || strings.HasPrefix(strings.TrimSpace(line), "#"):
		case !strings.HasPrefix(line, "  "):
			inData = false
		default:
			k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
			uv, err := strconv.Unquote(v)
			if !ok || err != nil {
				t.Fatalf("%s: cannot read ConfigMap line %q", path, line)
			}
			env[k] = uv
		}
	}
	if err := sc.Err(); err != nil || len(env) == 0 {
		t.Fatalf("%s: no ConfigMap data (%v)", path, err)
	}
	return env
}

// TestChartDefaultsBehindIngress_CrowdSignsInAndHammeringIsSlowed is the
// default chart install behind an ingress: Gatehouse gets exactly the
// environment the chart renders (nothing but the provider's address and
// the Secret's values are the test's), nginx stands in for the ingress
// controller (TLS, X-Forwarded-For as ingress-nginx writes it, or appended
// as Envoy, Traefik and Caddy do), and 500 users, each from an address of
// its own, sign in through it within a minute: none may get a 429. One
// client hammering the callback, or starting sign-ins it never finishes,
// is refused after the burst while everybody else still signs in.
func TestChartDefaultsBehindIngress_CrowdSignsInAndHammeringIsSlowed(t *testing.T) {
	t.Parallel()
	env := readConfigMapData(t, chartIngressEnv)
	if _, ok := env["TRUSTED_PROXIES"]; ok {
		t.Fatalf("the chart's defaults now set TRUSTED_PROXIES=%q: this test is about an install that lists no proxies", env["TRUSTED_PROXIES"])
	}
	public, err := url.Parse(env["ZITADEL_CALLBACK_URL"])
	if err != nil || public.Scheme != "https" {
		t.Fatalf("ZITADEL_CALLBACK_URL=%q: want the Ingress host over https", env["ZITADEL_CALLBACK_URL"])
	}
	origin := &url.URL{Scheme: public.Scheme, Host: public.Host}

	for _, style := range []struct {
		name, xff string
		users     int
	}{
		// ingress-nginx (use-forwarded-headers off, its default) replaces the header.
		{"IngressNginx", "$remote_addr", 500},
		// Envoy (Gateway API), Traefik and Caddy append the peer to what came in.
		{"Appending", "$proxy_add_x_forwarded_for", 200},
	} {
		t.Run(style.name, func(t *testing.T) {
			idp := testenv.StartIdP(t, testenv.IdPOptions{AppURLs: []string{origin.String()}})
			var logs testenv.SyncBuffer
			ln, listenURL := testenv.Listen(t) // behind the ingress; the public URL is the chart's
			var cfg config.Config
			app := testenv.StartApp(t, ln, listenURL, idp, testenv.AppOptions{
				Modify: func(c *config.Config) {
					var err error
					cfg, err = config.Load(context.Background(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil,
						config.Overrides{
							"ZITADEL_DOMAIN":    idp.URL,          // the test's provider
							"ZITADEL_CLIENT_ID": testenv.ClientID, // from the Secret
							"SESSION_SECRET":    "chart-ingress-test-session-secret-0123456789",
						})
					if err != nil {
						t.Fatalf("the chart's environment does not load: %v", err)
					}
					*c = cfg
				},
				Options: server.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))},
			}, true)
			if cfg.RateLimit <= 0 || len(cfg.TrustedProxies) != 0 {
				t.Fatalf("chart defaults: RATE_LIMIT_PER_MINUTE=%d, TRUSTED_PROXIES=%v; want limits on and no proxies listed", cfg.RateLimit, cfg.TrustedProxies)
			}
			host := public.Hostname()
			ingress := testenv.StartNginx(t, testenv.NginxOptions{
				TLSNames: []string{host},
				Server: fmt.Sprintf(`    server_name %s;
    location / {
      proxy_pass http://%s;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For %s;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Real-IP $remote_addr;
    }`, host, strings.TrimPrefix(app.URL, "http://"), style.xff),
			})
			port := public.Port()
			if port == "" {
				port = "443"
			}
			crowd := &crowd{origin: origin, dial: map[string]string{host + ":" + port: ingress.Addr}, tls: ingress.TLS.ClientConfig(false)}

			// The crowd: distinct addresses, 40 signing in at a time (more than the
			// burst: pending sign-ins of one address would be refused).
			start := time.Now()
			res := crowd.signIn(t, style.users, 40, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 77, byte(i / 250), byte(1 + i%250)}) })
			took := time.Since(start)
			t.Logf("%d users from %d addresses signed in through nginx in %v (%.0f a minute): %v",
				style.users, style.users, took.Round(time.Millisecond), float64(style.users)/took.Minutes(), res)
			if res.refused > 0 || res.failed > 0 || res.ok != style.users {
				t.Fatalf("crowd behind the default chart's ingress: %v; want every sign-in to complete, no 429", res)
			}

			// One client hammers the callback with states that match no sign-in.
			hammer := netip.MustParseAddr("127.88.0.1")
			codes := crowd.hammer(t, hammer, style.xff != "$remote_addr", 3*cfg.RateLimitBurst,
				"/auth/callback?state=forged&code=forged", http.MethodGet)
			assertSlowedDown(t, "callback", codes, cfg.RateLimitBurst, http.StatusBadRequest)
			// Another starts sign-ins and never comes back.
			codes = crowd.hammer(t, netip.MustParseAddr("127.88.0.2"), false, 3*cfg.RateLimitBurst, "/auth/signin/zitadel", http.MethodPost)
			assertSlowedDown(t, "sign-in start", codes, cfg.RateLimitBurst, http.StatusSeeOther)
			// Everybody else is not affected: the next users sign in at once.
			if res := crowd.signIn(t, 20, 4, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 78, 0, byte(1 + i)}) }); res.ok != 20 {
				t.Fatalf("while one client was refused, others signing in: %v", res)
			}

			if n := strings.Count(logs.String(), "X-Forwarded-For from a proxy not listed in TRUSTED_PROXIES"); n != 1 {
				t.Errorf("%d warnings about the unlisted proxy's X-Forwarded-For, want exactly one for all the requests", n)
			}
		})
	}
}

// crowd signs users in through the ingress stand-in.
type crowd struct {
	origin *url.URL
	dial   map[string]string
	tls    *tls.Config
}

type crowdResult struct {
	ok, refused, failed int
	firstErr            error
}

func (r crowdResult) String() string {
	return fmt.Sprintf("%d signed in, %d refused with 429, %d failed otherwise (first error: %v)", r.ok, r.refused, r.failed, r.firstErr)
}

func (c *crowd) browser(from netip.Addr) *loadtest.Browser {
	return loadtest.NewBrowser(loadtest.BrowserOptions{App: c.origin, Source: from, Dial: c.dial, TLS: c.tls})
}

// signIn has n users, user i from address addr(i), sign in and open their
// profile, conc at a time.
func (c *crowd) signIn(t *testing.T, n, conc int, addr func(int) netip.Addr) crowdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var (
		mu   sync.Mutex
		res  crowdResult
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				b := c.browser(addr(i))
				user := []string{"alice", "bob"}[i%2]
				err := b.SignIn(ctx, user, devidp.DemoPassword)
				if err == nil {
					err = b.View(ctx, loadtest.KindPage, "/profile")
				}
				b.Close()
				mu.Lock()
				var se *loadtest.StepError
				switch {
				case err == nil:
					res.ok++
				case errors.As(err, &se) && se.Status == http.StatusTooManyRequests:
					res.refused++
				default:
					res.failed++
				}
				if err != nil && res.firstErr == nil {
					res.firstErr = fmt.Errorf("user %d from %s: %w", i, addr(i), err)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return res
}

// hammer sends n requests to path from one address, one after the other,
// and returns their statuses; forge adds an invented X-Forwarded-For to
// each (which an appending proxy keeps, left of the real address).
func (c *crowd) hammer(t *testing.T, from netip.Addr, forge bool, n int, path, method string) []int {
	t.Helper()
	client := &http.Client{
		Transport:     loadtest.NewTransport(from, c.dial, c.tls),
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	var codes []int
	for i := range n {
		req, _ := http.NewRequest(method, c.origin.String()+path, strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		if forge {
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i%250))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("hammer %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("hammer %s: 429 without Retry-After", path)
		}
		codes = append(codes, resp.StatusCode)
	}
	return codes
}

// assertSlowedDown: the first burst answers are the route's own (want),
// then 429s, save the odd token that refilled meanwhile (one a second at
// the default rate).
func assertSlowedDown(t *testing.T, what string, codes []int, burst, want int) {
	t.Helper()
	var passed, refused int
	for i, c := range codes {
		switch {
		case c == http.StatusTooManyRequests:
			refused++
		case c == want:
			passed++
		default:
			t.Fatalf("%s hammer: answer %d was %d, want %d or 429", what, i+1, c, want)
		}
	}
	for i := range burst {
		if codes[i] != want {
			t.Fatalf("%s hammer: answer %d within the burst of %d was %d: %v", what, i+1, burst, codes[i], codes)
		}
	}
	if passed > burst+len(codes)/6 || refused < len(codes)/2 {
		t.Fatalf("%s hammer: %d of %d passed, %d refused; want the burst of %d and then mostly 429: %v", what, passed, len(codes), refused, burst, codes)
	}
	t.Logf("%s hammer from one address: %d passed (burst %d), %d refused with 429", what, passed, burst, refused)
}
