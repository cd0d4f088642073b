package bearer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/bearer"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// budgetGate is a Gate with a fixed budget that records what it was told.
// The real one (ratelimit buckets per client) is tested through the
// endpoint in internal/forwardauth; this one lets the test see each call.
type budgetGate struct {
	mu       sync.Mutex
	budget   int
	asked    int
	charged  []string // the client of each charge, as read from its request
	released []bool   // each release's refused
}

// gate reads the client (its RemoteAddr) from r, as the real Gate does.
func (g *budgetGate) gate(r *http.Request) bearer.Charge {
	client := r.RemoteAddr
	return func() (func(bool), time.Duration, bool) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.asked++
		g.charged = append(g.charged, client)
		if g.budget == 0 {
			return nil, 42 * time.Second, false
		}
		g.budget--
		return func(refused bool) {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.released = append(g.released, refused)
			if !refused {
				g.budget++
			}
		}, 0, true
	}
}

func (g *budgetGate) state() (budget, asked int, released []bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.budget, g.asked, append([]bool(nil), g.released...)
}

// TestGate_ChargesOnlyIntrospectionsOfRefusedTokens: the Gate is asked
// only when a call to the provider is due (an uncached, well-formed opaque
// token), keeps the charge of a token the provider refused, gives back
// that of an active one, and when it refuses, the answer is Throttled and
// the provider is not asked.
func TestGate_ChargesOnlyIntrospectionsOfRefusedTokens(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	g := &budgetGate{budget: 2}
	v := gatedVerifier(t, f, g)
	r := httptest.NewRequest(http.MethodGet, "/auth/verify", nil)
	verify := func(token string) bearer.Result {
		return v.VerifyFor(context.Background(), r, "Bearer "+token)
	}
	good, other := f.token(t, cli).AccessToken, f.token(t, cli).AccessToken
	jwt := f.token(t, self).AccessToken
	calls := f.idp.Introspections()
	wantCalls := func(step string, n int64) {
		t.Helper()
		if got := f.idp.Introspections() - calls; got != n {
			t.Fatalf("%s: %d introspection calls in all, want %d", step, got, n)
		}
	}

	wantOutcome(t, verify(good), bearer.Allowed, "")
	wantOutcome(t, verify(jwt), bearer.Allowed, "")
	wantOutcome(t, verify("not a b64token!"), bearer.InvalidToken, bearer.ReasonMalformed)
	if budget, asked, released := g.state(); budget != 2 || asked != 1 || len(released) != 1 || released[0] {
		t.Fatalf("after an active opaque token, a JWT and a malformed one: budget %d, asked %d, released %v; want 2, 1, [false]", budget, asked, released)
	}
	wantCalls("active token", 1)

	wantOutcome(t, verify("made-up-token-1"), bearer.InvalidToken, bearer.ReasonInactive)
	wantOutcome(t, verify("made-up-token-1"), bearer.InvalidToken, bearer.ReasonInactive) // its refusal is cached: no charge
	wantOutcome(t, verify("made-up-token-2"), bearer.InvalidToken, bearer.ReasonInactive)
	if budget, asked, _ := g.state(); budget != 0 || asked != 3 {
		t.Fatalf("after two made-up tokens: budget %d, asked %d; want 0, 3", budget, asked)
	}
	wantCalls("made-up tokens", 3)

	res := verify("made-up-token-3")
	wantOutcome(t, res, bearer.Throttled, bearer.ReasonRateLimited)
	if res.RetryAfter != 42*time.Second || res.Credential != bearer.CredentialOpaque {
		t.Errorf("throttled: retry after %v, credential %q", res.RetryAfter, res.Credential)
	}
	wantOutcome(t, verify(other), bearer.Throttled, bearer.ReasonRateLimited) // a good token needs a call too
	wantOutcome(t, verify(good), bearer.Allowed, "")                          // a cached answer does not
	wantOutcome(t, verify(jwt), bearer.Allowed, "")
	wantCalls("throttled", 3)

	// Without a request (Verify), nothing is charged.
	wantOutcome(t, v.Verify(context.Background(), "Bearer "+other), bearer.Allowed, "")
	wantCalls("ungated", 4)
}

// TestGate_LeavingEarlyDoesNotMakeMadeUpTokensFree: the call goes on
// without the request that started it, and its verdict settles the
// charge: a client that hangs up before the answer still pays for a
// made-up token (and gets a good one's charge back).
func TestGate_LeavingEarlyDoesNotMakeMadeUpTokensFree(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	g := &budgetGate{budget: 5}
	v := gatedVerifier(t, f, g)
	release := f.idp.HoldIntrospection()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	before := f.idp.Introspections()
	done := make(chan bearer.Result, 1)
	go func() {
		done <- v.VerifyFor(ctx, httptest.NewRequest(http.MethodGet, "/auth/verify", nil), "Bearer made-up-and-gone")
	}()
	waitUntil(t, "the introspection call to start", func() bool { return f.idp.Introspections() > before })
	cancel()
	if res := <-done; res.Outcome != bearer.Unavailable {
		t.Fatalf("request that left: %v", res.Outcome)
	}
	release()
	waitUntil(t, "the call's verdict to settle the charge", func() bool { _, _, released := g.state(); return len(released) == 1 })
	if budget, _, released := g.state(); budget != 4 || !released[0] {
		t.Errorf("budget %d, released %v; want 4, [true]: the made-up token is charged", budget, released)
	}
}

// TestGate_ReadsTheRequestBeforeTheCallIsShared: the call goes on after
// the request that started it has left, and net/http forbids using a
// request after its handler returned: the client is read from the
// request before the call starts, and the charge inside the call uses
// only that. (A read of the request inside the call either charges the
// client the request names afterwards, or is reported by -race.)
func TestGate_ReadsTheRequestBeforeTheCallIsShared(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	g := &budgetGate{budget: 5}
	v := gatedVerifier(t, f, g)
	release := f.idp.HoldIntrospection()
	defer release()
	r := httptest.NewRequest(http.MethodGet, "/auth/verify", nil)
	r.RemoteAddr = "192.0.2.7:4711"
	gone, cancel := context.WithCancel(context.Background())
	cancel() // its client has hung up: VerifyFor returns without waiting for the call
	if res := v.VerifyFor(gone, r, "Bearer made-up-and-gone"); res.Outcome != bearer.Unavailable {
		t.Fatalf("request that left: %v", res.Outcome)
	}
	// Its handler has returned; the server is free to do what it likes with r.
	r.RemoteAddr = "198.51.100.9:1"
	release()
	waitUntil(t, "the call's verdict to settle the charge", func() bool { _, _, released := g.state(); return len(released) == 1 })
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.charged) != 1 || g.charged[0] != "192.0.2.7:4711" {
		t.Errorf("charged %q, want [192.0.2.7:4711]: the client the request named while its handler ran", g.charged)
	}
}

// TestGate_ConcurrentRequestsForOneNewTokenAreChargedOnce: a client that
// fans out with a new good token (right after renewing it) makes one call
// to the provider, and only the request that started it is charged; the
// others wait for its answer. With a budget of 1, none of 12 is refused.
func TestGate_ConcurrentRequestsForOneNewTokenAreChargedOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	g := &budgetGate{budget: 1}
	v := gatedVerifier(t, f, g)
	good := f.token(t, cli).AccessToken
	release := f.idp.HoldIntrospection()
	defer release()
	const n = 12
	results := make(chan bearer.Result, n)
	for range n {
		go func() {
			results <- v.VerifyFor(context.Background(), httptest.NewRequest(http.MethodGet, "/auth/verify", nil), "Bearer "+good)
		}()
	}
	waitUntil(t, "all requests to wait on the one call", func() bool { return bearer.Waiting(v) == n })
	release()
	for range n {
		if res := <-results; res.Outcome != bearer.Allowed {
			t.Errorf("a request for a good token in a fan-out: %v (%s)", res.Outcome, res.Reason)
		}
	}
	if budget, asked, released := g.state(); asked != 1 || budget != 1 || len(released) != 1 || released[0] {
		t.Errorf("gate asked %d times, budget %d, released %v; want 1, 1, [false]", asked, budget, released)
	}
}

// gatedVerifier is a verifier on f's provider that asks g before every
// introspection call.
func gatedVerifier(t *testing.T, f *fixture, g *budgetGate) *bearer.Verifier {
	t.Helper()
	v, err := bearer.New(bearer.Config{Issuer: f.idp.URL, Audiences: []string{testenv.ClientID}, Introspect: true,
		CacheTTL: time.Hour, Now: f.clock.Now, Gate: g.gate}, f.provider)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitUntil polls cond for up to 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
