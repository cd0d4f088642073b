package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/loopback"
)

// The bearer round: GET /auth/verify as nginx asks it for an API client's
// request carrying Authorization: Bearer, with a JWT access token and with
// an opaque one (introspected once, then cached), each next to the bare
// handler answering the same request (the same token in the header: parsing
// it is net/http's work). A Gatehouse of its own serves it: a confidential
// client (it introspects) whose application issues JWT access tokens,
// pinned like the forward-auth round: on the CPUs of the round's bare
// server, which it is compared with.
const (
	BearerJWT        = "GET /auth/verify (bearer JWT)"
	BearerOpaque     = "GET /auth/verify (bearer opaque, cached)"
	BareBearerJWT    = "bare " + BearerJWT
	BareBearerOpaque = "bare " + BearerOpaque
)

// Budgets of a bearer decision (issue 15): requests per second, same run,
// over bare net/http's.
const (
	BudgetBearerJWTRatio    = 0.60
	BudgetBearerOpaqueRatio = 0.80
)

// The bearer round's applications at the provider.
const (
	bearerClientID     = "gatehouse-load-api" // the bearer Gatehouse's own, JWT access tokens
	bearerClientSecret = "load-test-gatehouse-api-secret"
	apiClientID        = "gatehouse-load-cli" // an API client of the same project, opaque tokens
	apiClientSecret    = "load-test-cli-secret"
	apiRedirect        = "http://127.0.0.1:1/cb" // never dialled: the code is read from the redirect
)

// Bearer is the bearer round's measurement.
type Bearer struct {
	Connections int
	// Pinning is how wrk and the servers shared the CPUs in this round.
	Pinning Pinning
	Rounds  []map[string]Throughput // the pairs (Options.Pairs per round)
	Tokens  map[string]int          // token lengths by kind ("jwt", "opaque")
}

// bearerClients are the round's registrations at the provider.
func bearerClients() []devidp.Client {
	return []devidp.Client{
		{ID: bearerClientID, Secret: bearerClientSecret, RedirectURIs: []string{apiRedirect}, JWTAccessTokens: true},
		{ID: apiClientID, Secret: apiClientSecret, RedirectURIs: []string{apiRedirect}},
	}
}

// bearerRound starts the bearer Gatehouse with pin's server CPUs and
// measures its rounds, the bare server (bareAddr, barePID, started with
// the same pinning) answering the same requests.
func bearerRound(ctx context.Context, out *Bearer, bin, issuer, bareAddr string, barePID int, pin Pinning, opts Options, say func(string, ...any)) error {
	gh, addr, admin, release, err := startBearerGatehouse(bin, issuer, pin, opts.ProfileDir != "")
	if err != nil {
		return err
	}
	defer release()
	defer gh.stop()
	out.Connections = opts.ForwardConnections
	out.Pinning = pin
	for round := range opts.Rounds {
		// Fresh tokens each round: a run longer than their lifetime
		// (five minutes) must not end in 401s.
		jwt, err := apiToken(ctx, issuer, bearerClientID, bearerClientSecret)
		if err != nil {
			return fmt.Errorf("JWT access token: %w", err)
		}
		opaque, err := apiToken(ctx, issuer, apiClientID, apiClientSecret)
		if err != nil {
			return fmt.Errorf("opaque access token: %w", err)
		}
		if strings.Count(jwt, ".") != 2 || strings.Count(opaque, ".") == 2 {
			return errors.New("the provider issued the wrong kinds of tokens")
		}
		out.Tokens = map[string]int{"jwt": len(jwt), "opaque": len(opaque)}
		say("bearer round %d/%d: %d connections", round+1, opts.Rounds, opts.ForwardConnections)
		decision := func(name, addr, path, token string, pid int) target {
			return target{name: name, addr: addr, path: path, api: true, pid: pid,
				extra: []string{"X-Original-URL: " + protectedURL, "X-Original-Method: GET", "Authorization: Bearer " + token}}
		}
		targets := map[string]target{
			BareBearerJWT:    decision(BareBearerJWT, bareAddr, "/verify", jwt, barePID),
			BearerJWT:        decision(BearerJWT, addr, "/auth/verify?roles=admin", jwt, gh.pid()), // its first request (hammer checks for a 200) verifies it
			BareBearerOpaque: decision(BareBearerOpaque, bareAddr, "/verify", opaque, barePID),
			BearerOpaque:     decision(BearerOpaque, addr, "/auth/verify?roles=admin", opaque, gh.pid()), // the first introspects, the rest hit the cache
		}
		res, err := pairs(ctx, round, opts, pin, targets, nil, [][2]string{{BareBearerJWT, BearerJWT}, {BareBearerOpaque, BearerOpaque}})
		if err != nil {
			return err
		}
		out.Rounds = append(out.Rounds, res...)
		if round == opts.Rounds-1 && opts.ProfileDir != "" {
			// The cached opaque token beside its bare ceiling, read per
			// request as the session decision's pair is (loadtest.go).
			for _, p := range []struct{ name, base, file string }{
				{BearerOpaque, "http://" + admin, "bearer-opaque-cpu.pprof"},
				{BareBearerOpaque, "http://" + bareAddr, "bearer-opaque-bare-cpu.pprof"},
			} {
				say("CPU profile of %s (%ds, %s)", p.name, opts.ProfileSecs, pin)
				wait := profileDuring(ctx, opts.ProfileDir, p.base, p.file, opts.ProfileSecs)
				th, err := hammer(ctx, targets[p.name], opts.ForwardConnections, 0, time.Duration(opts.ProfileSecs)*time.Second, pin)
				if err != nil {
					return err
				}
				if err := wait(); err != nil {
					return err
				}
				say("%s: %d requests, server CPU %v per request", p.file, th.Requests, th.CPUPerRequest())
			}
		}
	}
	return nil
}

// startBearerGatehouse runs Gatehouse as the bearer round's confidential
// client, on ports reserved for it (internal/loopback) until release, on
// pin's server CPUs; profiled, with its profiler on the admin address.
func startBearerGatehouse(bin, issuer string, pin Pinning, profiled bool) (gh *process, addr, adminAddr string, release func(), err error) {
	port, err := loopback.Reserve()
	if err != nil {
		return nil, "", "", nil, err
	}
	admin, err := loopback.Reserve()
	if err != nil {
		port.Close()
		return nil, "", "", nil, err
	}
	release = func() { port.Close(); admin.Close() }
	env := append(gatehouseEnv(port.Port, admin.Port, issuer), // a later value wins (os/exec)
		"ZITADEL_CLIENT_ID="+bearerClientID, "ZITADEL_CLIENT_SECRET="+bearerClientSecret)
	if profiled {
		env = append(env, "ADMIN_PPROF=true")
	}
	name, args := pin.server(bin, []string{"-env-file", os.DevNull})
	if gh, err = start(name, args, env); err != nil {
		release()
		return nil, "", "", nil, err
	}
	if _, err = waitStatus(gh, "http://"+port.Addr()+"/readyz", http.StatusOK, readyTimeout); err != nil {
		gh.stop()
		release()
		return nil, "", "", nil, fmt.Errorf("bearer gatehouse: %w", err)
	}
	if err = pin.check("bearer gatehouse", gh.pid()); err != nil {
		gh.stop()
		release()
		return nil, "", "", nil, err
	}
	return gh, port.Addr(), admin.Addr(), release, nil
}

// apiToken signs alice in at the provider as an API client would by
// itself (authorization code with PKCE through the provider's login form,
// then the token endpoint with the client's secret) and returns the
// access token.
func apiToken(ctx context.Context, issuer, clientID, secret string) (string, error) {
	disc, err := client.Discover(ctx, issuer, http.DefaultClient)
	if err != nil {
		return "", err
	}
	conf := &oauth2.Config{ClientID: clientID, ClientSecret: secret, RedirectURL: apiRedirect,
		Scopes:   []string{"openid", "profile", "email", devidp.ScopeRoles, devidp.ScopeResourceOwner},
		Endpoint: oauth2.Endpoint{AuthURL: disc.AuthorizationEndpoint, TokenURL: disc.TokenEndpoint, AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	back, _ := url.Parse(apiRedirect)
	v := newVU(back, http.DefaultTransport)
	start, err := url.Parse(conf.AuthCodeURL("load", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		return "", err
	}
	loc, err := v.atProvider(ctx, start, "alice", devidp.DemoPassword)
	if err != nil {
		return "", err
	}
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return "", fmt.Errorf("code exchange: %w", err)
	}
	return tok.AccessToken, nil
}

// JWTRatio and OpaqueRatio are the decisions' requests per second over the
// bare handler's, round by round.
func (b Bearer) JWTRatio() Ratio    { return b.ratio(BearerJWT, BareBearerJWT) }
func (b Bearer) OpaqueRatio() Ratio { return b.ratio(BearerOpaque, BareBearerOpaque) }

func (b Bearer) ratio(name, bare string) Ratio {
	r := Report{Rounds: b.Rounds}
	return r.RPSRatio(name, bare)
}

// bearerRows writes the bearer figures into the report's table.
func (r *Report) bearerRows(row func(fig, budget, measured, against string)) {
	b := r.Bearer
	if len(b.Rounds) == 0 {
		return
	}
	rr := Report{Rounds: b.Rounds}
	line := func(name string) string {
		rps := rr.Median(name, func(t Throughput) float64 { return t.RPS })
		p99 := time.Duration(rr.Median(name, func(t Throughput) float64 { return float64(t.P99) }))
		cpu := time.Duration(rr.Median(name, func(t Throughput) float64 { return float64(t.CPUPerRequest()) }))
		return fmt.Sprintf("%.0f/s, p99 %v, server CPU %v", rps, p99.Round(time.Microsecond), cpu.Round(100*time.Nanosecond))
	}
	pinned := ", not pinned"
	if b.Pinning.On() {
		pinned = ", pinned: servers on CPU " + b.Pinning.Servers + ", wrk on CPU " + b.Pinning.Client
	}
	for _, f := range []struct {
		name, bare, kind string
		budget           float64
		q                Ratio
	}{
		{BearerJWT, BareBearerJWT, "jwt", BudgetBearerJWTRatio, b.JWTRatio()},
		{BearerOpaque, BareBearerOpaque, "opaque", BudgetBearerOpaqueRatio, b.OpaqueRatio()},
	} {
		row(fmt.Sprintf("%s (token of %d B, roles=admin, %d connections%s)", f.name, b.Tokens[f.kind], b.Connections, pinned),
			fmt.Sprintf("≥ %.0f%% of bare", 100*f.budget), line(f.name)+"; bare "+line(f.bare),
			verdict(f.q.Median >= f.budget)+": "+f.q.String()+"; server CPU bare/Gatehouse "+rr.CPURatio(f.name, f.bare).String())
	}
}
