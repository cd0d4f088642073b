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
	released []bool // each release's refused
}

func (g *budgetGate) gate(*http.Request) (func(bool), time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked++
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
	v, err := bearer.New(bearer.Config{Issuer: f.idp.URL, Audiences: []string{testenv.ClientID}, Introspect: true,
		CacheTTL: time.Hour, Now: f.clock.Now, Gate: g.gate}, f.provider)
	if err != nil {
		t.Fatal(err)
	}
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

// TestGate_RequestThatLeavesEarlyIsCharged: a client that hangs up before
// the provider answers keeps its charge, or hanging up would make every
// made-up token free.
func TestGate_RequestThatLeavesEarlyIsCharged(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	g := &budgetGate{budget: 5}
	v, err := bearer.New(bearer.Config{Issuer: f.idp.URL, Audiences: []string{testenv.ClientID}, Introspect: true,
		CacheTTL: time.Hour, Now: f.clock.Now, Gate: g.gate}, f.provider)
	if err != nil {
		t.Fatal(err)
	}
	good := f.token(t, cli).AccessToken
	release := f.idp.HoldIntrospection()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	before := f.idp.Introspections()
	done := make(chan bearer.Result, 1)
	go func() {
		done <- v.VerifyFor(ctx, httptest.NewRequest(http.MethodGet, "/auth/verify", nil), "Bearer "+good)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.idp.Introspections() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if res := <-done; res.Outcome != bearer.Unavailable {
		t.Fatalf("request that left: %v", res.Outcome)
	}
	if budget, _, released := g.state(); budget != 4 || len(released) != 1 || !released[0] {
		t.Errorf("budget %d, released %v; want 4, [true]", budget, released)
	}
}
