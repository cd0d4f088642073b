package conformance_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestMain(m *testing.M) {
	// zitadel/oidc logs discovery through the process-wide default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// rig is Gatehouse wired to a test provider, with its spans and logs recorded.
type rig struct {
	op    *OP
	app   *testenv.App
	spans *tracetest.SpanRecorder
	logs  *testenv.SyncBuffer
}

func newRig(t *testing.T, b Behaviour, waitReady bool) *rig {
	t.Helper()
	ln, appURL := testenv.Listen(t)
	op := StartOP(t, appURL+"/auth/callback", b)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	logs := &testenv.SyncBuffer{}
	app := testenv.StartApp(t, ln, appURL, &testenv.IdP{URL: op.URL}, testenv.AppOptions{Options: server.Options{
		Tracer: tp.Tracer("conformance"),
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}}, waitReady)
	return &rig{op: op, app: app, spans: spans, logs: logs}
}

// login signs in: to the provider, straight back with a code, and returns
// the browser and the callback's response (not followed).
func (r *rig) login(t *testing.T) (*testenv.Browser, *testenv.Response) {
	t.Helper()
	b := testenv.NewBrowser(t)
	toOP := b.StartSignIn(r.app, "")
	if toOP.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in = %s, want 303 to the provider", toOP)
	}
	back := b.Get(toOP.Header.Get("Location"))
	if back.StatusCode != http.StatusSeeOther {
		t.Fatalf("provider authorize = %d %s", back.StatusCode, back.Body)
	}
	return b, b.Get(back.Header.Get("Location"))
}

// failureReasons are the auth.failure.reason values of the ended spans.
func (r *rig) failureReasons() []string {
	var out []string
	for _, s := range r.spans.Ended() {
		for _, a := range s.Attributes() {
			if string(a.Key) == "auth.failure.reason" {
				out = append(out, a.Value.AsString())
			}
		}
	}
	return out
}

// assertNoLeak checks that no code, token, state or nonce the provider
// handed out appears in the page, the logs or the spans.
func (r *rig) assertNoLeak(t *testing.T, page string) {
	t.Helper()
	var spanText strings.Builder
	for _, s := range r.spans.Ended() {
		spanText.WriteString(s.Name() + " " + s.Status().Description)
		for _, a := range s.Attributes() {
			spanText.WriteString(" " + a.Value.String())
		}
		for _, e := range s.Events() {
			spanText.WriteString(" " + e.Name)
			for _, a := range e.Attributes {
				spanText.WriteString(" " + a.Value.String())
			}
		}
	}
	for _, secret := range r.op.Secrets() {
		for where, text := range map[string]string{"page": page, "log": r.logs.String(), "span": spanText.String()} {
			if strings.Contains(text, secret) {
				t.Errorf("a protocol secret (%.6s...) appears in the %s", secret, where)
			}
		}
	}
}

// assertRejected checks the outcome every misbehaviour must have.
func (r *rig) assertRejected(t *testing.T, b *testenv.Browser, cb *testenv.Response, reason string) {
	t.Helper()
	if cb.StatusCode < 400 || cb.StatusCode > 499 {
		t.Errorf("callback = %s, want a 4xx page", cb)
	}
	if !strings.HasPrefix(cb.Header.Get("Content-Type"), "text/html") || !strings.Contains(cb.Body, "<h1>") {
		t.Errorf("callback answered without the friendly page:\n%s", cb.Body)
	}
	for _, c := range cb.Cookies() {
		if (c.Name == "gatehouse" || c.Name == "__Host-gatehouse") && c.MaxAge > 0 {
			t.Errorf("callback set a session cookie")
		}
	}
	if p := b.Get(r.app.URL + "/profile"); p.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/auth/signin") {
		t.Errorf("after the rejected sign-in, /profile = %s, want a redirect to sign in (no session)", p)
	}
	found := false
	for _, got := range r.failureReasons() {
		found = found || got == reason
	}
	if !found {
		t.Errorf("no span has auth.failure.reason=%q (got %v)", reason, r.failureReasons())
	}
	r.assertNoLeak(t, cb.Body)
	r.assertHealthy(t)
}

// assertHealthy checks the process still serves, and a provider that
// behaves again gets its user signed in.
func (r *rig) assertHealthy(t *testing.T) {
	t.Helper()
	if h := testenv.NewBrowser(t).Get(r.app.URL + "/healthz"); h.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d after the attack", h.StatusCode)
	}
	r.op.Behave(Behaviour{})
	b, cb := r.login(t)
	if p := b.Follow(cb); p.StatusCode != http.StatusOK || !strings.HasSuffix(p.URL, "/profile") {
		t.Fatalf("a well-behaved sign-in after the attack landed on %s", p)
	}
}

func TestRP_RejectsMisbehavingProvider(t *testing.T) {
	t.Parallel()
	setClaim := func(name string, v any) func(*OP, map[string]any, map[string]any) {
		return func(_ *OP, _, c map[string]any) { c[name] = v }
	}
	dropClaim := func(name string) func(*OP, map[string]any, map[string]any) {
		return func(_ *OP, _, c map[string]any) { delete(c, name) }
	}
	unpublished := newKey(t, "not-published") // a key the provider never lists in its JWKS
	cases := []struct {
		name   string // the OpenID RP certification test it mirrors, where there is one
		b      Behaviour
		reason string
		cause  error // as the log names it: proof the case failed for its own reason
	}{
		{"rp-id_token-bad-sig-rs256", Behaviour{Sign: func(_ *OP, k *signingKey, in string) []byte {
			sig := rs256(k, in)
			sig[10] ^= 0xff
			return sig
		}}, auth.ReasonIDTokenInvalid, oidc.ErrSignatureInvalid},
		{"rp-id_token-sig-none", Behaviour{
			IDToken: func(_ *OP, h, _ map[string]any) { h["alg"] = "none"; delete(h, "kid") },
			Sign:    func(*OP, *signingKey, string) []byte { return nil },
		}, auth.ReasonIDTokenInvalid, oidc.ErrSignatureUnsupportedAlg},
		{"alg-confusion-hs256-with-public-key", Behaviour{
			IDToken: func(_ *OP, h, _ map[string]any) { h["alg"] = "HS256" },
			Sign: func(_ *OP, k *signingKey, in string) []byte {
				pub, _ := json.Marshal(k.jwk())
				return hs256(pub, in)
			},
		}, auth.ReasonIDTokenInvalid, oidc.ErrSignatureUnsupportedAlg},
		{"rp-id_token-issuer-mismatch", Behaviour{IDToken: setClaim("iss", "https://evil.example")}, auth.ReasonIDTokenInvalid, oidc.ErrIssuerInvalid},
		{"rp-id_token-aud-missing", Behaviour{IDToken: dropClaim("aud")}, auth.ReasonIDTokenInvalid, oidc.ErrAudience},
		{"rp-id_token-aud-mismatch", Behaviour{IDToken: setClaim("aud", []string{"another-client"})}, auth.ReasonIDTokenInvalid, oidc.ErrAudience},
		{"azp-for-another-client", Behaviour{IDToken: func(_ *OP, _, c map[string]any) {
			c["aud"] = []string{clientID, "another-client"}
			c["azp"] = "another-client"
		}}, auth.ReasonIDTokenInvalid, oidc.ErrAzpInvalid},
		{"azp-missing-with-several-audiences", Behaviour{IDToken: setClaim("aud", []string{clientID, "another-client"})}, auth.ReasonIDTokenInvalid, oidc.ErrAzpMissing},
		{"rp-id_token-sub-missing", Behaviour{IDToken: dropClaim("sub")}, auth.ReasonIDTokenInvalid, oidc.ErrSubjectMissing},
		{"rp-id_token-iat-missing", Behaviour{IDToken: dropClaim("iat")}, auth.ReasonIDTokenInvalid, oidc.ErrIatMissing},
		{"iat-far-in-the-future", Behaviour{IDToken: setClaim("iat", time.Now().Add(time.Hour).Unix())}, auth.ReasonIDTokenInvalid, oidc.ErrIatInFuture},
		{"rp-id_token-expired", Behaviour{IDToken: setClaim("exp", time.Now().Add(-time.Minute).Unix())}, auth.ReasonIDTokenInvalid, oidc.ErrExpired},
		{"rp-nonce-missing", Behaviour{IDToken: dropClaim("nonce")}, auth.ReasonIDTokenInvalid, oidc.ErrNonceInvalid},
		{"rp-nonce-invalid", Behaviour{IDToken: setClaim("nonce", "a-nonce-from-another-sign-in")}, auth.ReasonIDTokenInvalid, oidc.ErrNonceInvalid},
		{"rp-id_token-kid-not-in-jwks", Behaviour{SigningKey: func(*OP) *signingKey { return unpublished }}, auth.ReasonIDTokenInvalid, oidc.ErrKeyNone},
		{"rp-id_token-kid-absent-multiple-jwks", Behaviour{
			IDToken: func(_ *OP, h, _ map[string]any) { delete(h, "kid") },
			KeySet:  func(op *OP) []jose.JSONWebKey { return []jose.JSONWebKey{op.current.jwk(), unpublished.jwk()} },
		}, auth.ReasonIDTokenInvalid, oidc.ErrKeyMultiple},
		{"rp-id_token-bad-at_hash", Behaviour{IDToken: setClaim("at_hash", "AAAAAAAAAAAAAAAAAAAAAA")}, auth.ReasonIDTokenInvalid, oidc.ErrAtHash},
		{"no-id_token-in-token-response", Behaviour{TokenResponse: func(_ *OP, r map[string]any) { delete(r, "id_token") }}, auth.ReasonIDTokenInvalid, errors.New("token response has no id_token")},
		{"sig-none-advertised-in-discovery", Behaviour{
			Discovery: func(_ *OP, d map[string]any) {
				d["id_token_signing_alg_values_supported"] = []string{"none", "HS256", "RS256"}
			},
			IDToken: func(_ *OP, h, _ map[string]any) { h["alg"] = "none"; delete(h, "kid") },
			Sign:    func(*OP, *signingKey, string) []byte { return nil },
		}, auth.ReasonIDTokenInvalid, oidc.ErrSignatureUnsupportedAlg},
		{"rp-userinfo-bad-sub-claim", Behaviour{Userinfo: func(_ *OP, u map[string]any) { u["sub"] = "someone-else" }}, auth.ReasonUserinfoSubMismatch, rp.ErrUserInfoSubNotMatching},
		{"rfc9207-iss-parameter-mismatch", Behaviour{Redirect: func(_ *OP, q url.Values) { q["iss"] = []string{"https://evil.example"} }}, auth.ReasonIssuerMismatch, errors.New("iss parameter does not match the issuer")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tc.b, true)
			b, cb := r.login(t)
			r.assertRejected(t, b, cb, tc.reason)
			if !strings.Contains(r.logs.String(), `"error":"`+tc.cause.Error()) {
				t.Errorf("the log does not give the cause %q; it says:\n%s", tc.cause, r.logs.String())
			}
		})
	}
}

func TestRP_DiscoveryWithAnotherIssuerKeepsProviderNotReady(t *testing.T) {
	t.Parallel()
	r := newRig(t, Behaviour{Discovery: func(op *OP, d map[string]any) { d["issuer"] = op.URL + "/another-tenant" }}, false)
	b := testenv.NewBrowser(t)
	deadline := time.Now().Add(5 * time.Second)
	for r.op.Discoveries() < 2 { // the first attempt and at least one retry
		if time.Now().After(deadline) {
			t.Fatal("the app never fetched discovery")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.app.Provider().Ready() {
		t.Fatal("provider became ready with a discovery document for another issuer")
	}
	if rz := b.Get(r.app.URL + "/readyz"); rz.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", rz.StatusCode)
	}
	s := b.StartSignIn(r.app, "")
	if s.StatusCode != http.StatusServiceUnavailable || s.Header.Get("Retry-After") == "" || !strings.Contains(s.Body, "<h1>") {
		t.Errorf("sign-in = %s, want the friendly 503 page with Retry-After", s)
	}
	found := false
	for _, got := range r.failureReasons() {
		found = found || got == auth.ReasonProviderUnavailable
	}
	if !found {
		t.Errorf("no span has auth.failure.reason=%q (got %v)", auth.ReasonProviderUnavailable, r.failureReasons())
	}
	if p := b.Get(r.app.URL + "/profile"); p.StatusCode != http.StatusSeeOther {
		t.Errorf("/profile = %s, want a redirect to sign in", p)
	}
	if h := b.Get(r.app.URL + "/healthz"); h.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %d: a lying provider must not make the process unhealthy", h.StatusCode)
	}
	// Once the provider tells the truth, the app connects and signs in.
	r.op.Behave(Behaviour{})
	deadline = time.Now().Add(10 * time.Second)
	for !r.app.Provider().Ready() {
		if time.Now().After(deadline) {
			t.Fatal("provider never became ready after discovery was fixed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.assertHealthy(t)
}

func TestRP_AcceptsWellBehavedVariants(t *testing.T) {
	t.Parallel()
	t.Run("rp-id_token-kid-absent-single-jwks", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, Behaviour{
			IDToken: func(_ *OP, h, _ map[string]any) { delete(h, "kid") },
			KeySet: func(op *OP) []jose.JSONWebKey {
				k := op.current.jwk()
				k.KeyID = ""
				return []jose.JSONWebKey{k}
			},
		}, true)
		b, cb := r.login(t)
		if p := b.Follow(cb); p.StatusCode != http.StatusOK || !strings.HasSuffix(p.URL, "/profile") {
			t.Fatalf("ID token without kid, one key in the JWKS: landed on %s, want the profile", p)
		}
	})
	t.Run("rp-key-rotation-op-sign-key", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, Behaviour{}, true)
		b1, cb1 := r.login(t)
		if p := b1.Follow(cb1); p.StatusCode != http.StatusOK {
			t.Fatalf("first sign-in: %s", p)
		}
		r.op.Rotate(t, "key-2", true) // the old key is gone from the JWKS too
		b2, cb2 := r.login(t)
		if p := b2.Follow(cb2); p.StatusCode != http.StatusOK || !strings.HasSuffix(p.URL, "/profile") {
			t.Fatalf("sign-in after the provider rotated its key: landed on %s", p)
		}
		// The first session lives on: it is ours, not the provider's key's.
		if p := b1.Get(r.app.URL + "/profile"); p.StatusCode != http.StatusOK {
			t.Fatalf("first session after rotation: %s", p)
		}
	})
	t.Run("rp-userinfo-bearer-header", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, Behaviour{}, true)
		b, cb := r.login(t)
		if p := b.Follow(cb); p.StatusCode != http.StatusOK {
			t.Fatalf("sign-in: %s", p)
		}
		if p := b.Get(r.app.URL + "/auth/userinfo"); p.StatusCode != http.StatusOK || !strings.Contains(p.Body, subject) {
			t.Fatalf("/auth/userinfo = %d %s", p.StatusCode, p.Body)
		}
		got := r.op.UserinfoAuth()
		if len(got) != 2 {
			t.Fatalf("userinfo was called %d times, want 2 (sign-in and /auth/userinfo)", len(got))
		}
		for _, h := range got {
			if !strings.HasPrefix(h, "Bearer ") || len(h) < len("Bearer ")+20 {
				t.Errorf("userinfo Authorization header %.12q..., want the access token as a Bearer header", h)
			}
		}
	})
	t.Run("rfc9207-iss-parameter-matches", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, Behaviour{Redirect: func(op *OP, q url.Values) { q["iss"] = []string{op.URL} }}, true)
		b, cb := r.login(t)
		if p := b.Follow(cb); p.StatusCode != http.StatusOK || !strings.HasSuffix(p.URL, "/profile") {
			t.Fatalf("authorization response with the right iss: landed on %s", p)
		}
	})
}
