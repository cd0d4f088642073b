package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rs"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

const testIssuer = "https://idp.example"

// introspectionEndpoint is the provider's introspection endpoint, as far
// as these tests need it: it answers each token with the claims set for
// it (inactive for any other) and counts the calls.
type introspectionEndpoint struct {
	srv     *httptest.Server
	calls   atomic.Int64
	mu      sync.Mutex
	answers map[string]map[string]any
}

func newIntrospectionEndpoint(t *testing.T) *introspectionEndpoint {
	t.Helper()
	e := &introspectionEndpoint{answers: map[string]map[string]any{}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		e.mu.Lock()
		answer, ok := e.answers[r.PostFormValue("token")]
		e.mu.Unlock()
		if !ok {
			answer = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// answer makes the endpoint call token active, with claims.
func (e *introspectionEndpoint) answer(token string, claims map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.answers[token] = claims
}

// activeClaims are an active answer for Gatehouse's client, valid now.
func activeClaims(now time.Time) map[string]any {
	return map[string]any{"active": true, "iss": testIssuer, "sub": "user-1", "aud": []string{"gatehouse"},
		"client_id": "api-cli", "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix()}
}

func (e *introspectionEndpoint) IntrospectionURL() string { return e.srv.URL }
func (e *introspectionEndpoint) TokenEndpoint() string    { return e.srv.URL + "/token" }
func (e *introspectionEndpoint) HttpClient() *http.Client { return e.srv.Client() }
func (e *introspectionEndpoint) AuthFn() (any, error)     { return nil, nil }

// endpointUpstream is an Upstream whose only part is the introspection endpoint.
type endpointUpstream struct{ e *introspectionEndpoint }

func (u endpointUpstream) KeySet() (oidc.KeySet, error)             { return nil, errors.New("no key set here") }
func (u endpointUpstream) Introspector() (rs.ResourceServer, error) { return u.e, nil }
func (u endpointUpstream) Available(context.Context) error          { return nil }

func opaqueVerifier(t *testing.T, e *introspectionEndpoint, gate Gate) *Verifier {
	t.Helper()
	v, err := New(Config{Issuer: testIssuer, Audiences: []string{"gatehouse"}, Introspect: true, CacheTTL: time.Hour, Gate: gate},
		endpointUpstream{e})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestIntrospectShared_AnswerCachedMeanwhileCostsNoCall: a request that
// missed the cache just before a call stored its answer, and starts its
// own call just after that one ended, gets the cached answer: no second
// call to the provider, and no charge to its client.
func TestIntrospectShared_AnswerCachedMeanwhileCostsNoCall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		active  bool
		outcome Outcome
	}{
		{"Active", true, Allowed},
		{"Inactive", false, InvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newIntrospectionEndpoint(t)
			token := "opaque-" + tc.name
			if tc.active {
				e.answer(token, activeClaims(time.Now()))
			}
			var gated atomic.Int64
			gate := func(*http.Request) Charge {
				return func() (func(bool), time.Duration, bool) {
					gated.Add(1)
					return func(bool) {}, 0, true
				}
			}
			v := opaqueVerifier(t, e, gate)
			r := httptest.NewRequest(http.MethodGet, "/auth/verify", nil)
			if res := v.VerifyFor(context.Background(), r, "Bearer "+token); res.Outcome != tc.outcome || res.Cached {
				t.Fatalf("first use: %v cached=%v (%v)", res.Outcome, res.Cached, res.Err)
			}
			calls, charges := e.calls.Load(), gated.Load()

			// The late request: past the cache check, at the shared call.
			res := v.introspectShared(context.Background(), r, hashToken(token), token)
			if res.Outcome != tc.outcome || !res.Cached {
				t.Errorf("late request: %v cached=%v (%v); want %v from the cache", res.Outcome, res.Cached, res.Err, tc.outcome)
			}
			if n := e.calls.Load() - calls; n != 0 {
				t.Errorf("late request made %d introspection calls; want 0, the answer was cached", n)
			}
			if n := gated.Load() - charges; n != 0 {
				t.Errorf("late request was charged %d times; want 0", n)
			}
		})
	}
}

// TestIntrospection_ActiveAnswerIsNotJudgedByOurClockButItsExpIs: the
// provider's active: true says the token is valid now (RFC 7662), so an
// answer whose iat and nbf are ahead of Gatehouse's clock (running behind
// the provider's) is allowed; exp still counts, and so does every other
// check.
func TestIntrospection_ActiveAnswerIsNotJudgedByOurClockButItsExpIs(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name    string
		change  func(claims map[string]any)
		outcome Outcome
		reason  Reason
	}{
		{"IssuedAMinuteAhead", func(c map[string]any) {
			c["iat"], c["nbf"] = now.Add(time.Minute).Unix(), now.Add(time.Minute).Unix()
		}, Allowed, ""},
		{"Expired", func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() }, InvalidToken, ReasonExpired},
		{"ExpiredAndIssuedAhead", func(c map[string]any) {
			c["exp"], c["iat"], c["nbf"] = now.Add(-time.Second).Unix(), now.Add(time.Minute).Unix(), now.Add(time.Minute).Unix()
		}, InvalidToken, ReasonExpired},
		{"AnotherAudience", func(c map[string]any) { c["aud"] = []string{"someone-else"} }, InvalidToken, ReasonWrongAudience},
		{"AnotherIssuer", func(c map[string]any) { c["iss"] = "https://evil.example" }, InvalidToken, ReasonWrongIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newIntrospectionEndpoint(t)
			claims := activeClaims(now)
			tc.change(claims)
			e.answer("opaque-token", claims)
			res := opaqueVerifier(t, e, nil).Verify(context.Background(), "Bearer opaque-token")
			if res.Outcome != tc.outcome || res.Reason != tc.reason {
				t.Errorf("%v %q (%v), want %v %q", res.Outcome, res.Reason, res.Err, tc.outcome, tc.reason)
			}
		})
	}
}
