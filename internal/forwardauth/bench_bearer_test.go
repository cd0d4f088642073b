package forwardauth_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/bearer"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// BenchmarkDecision_Verify_JWT is BenchmarkDecision_Verify for an API
// client: the same endpoint, request (the browser's cookies stay in it,
// unread) and rules, the credential a JWT access token used again, as API
// clients use one token for many calls (its verification reused).
func BenchmarkDecision_Verify_JWT(b *testing.B) {
	benchBearerDecision(b, true)
}

// BenchmarkDecision_Verify_OpaqueCached is the same with an opaque token
// whose introspection answer is cached.
func BenchmarkDecision_Verify_OpaqueCached(b *testing.B) {
	benchBearerDecision(b, false)
}

func benchBearerDecision(b *testing.B, jwt bool) {
	v, tokens := benchVerifier(b)
	token := tokens.opaque
	if jwt {
		token = tokens.jwt
	}
	h, r := benchEndpointWith(b, v, "/auth/verify?roles=admin", "X-Original-URL", "https://grafana.example.com/d/abc?orgId=1",
		"X-Original-Method", "GET", "Authorization", "Bearer "+token)
	w := testenv.NewHeaderWriter()
	h.ServeHTTP(w, r) // the token's first use: verified, or introspected
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		h.ServeHTTP(w, r)
		if w.Code() != http.StatusOK || w.H.Get(forward.HeaderAssertion) == "" || w.H.Get(forward.HeaderUser) == "" {
			b.Fatalf("decision answered %d %v", w.Code(), w.H)
		}
	}
}

type benchTokens struct{ jwt, opaque string }

// benchVerifier is a verifier on a connection to the development provider
// (Gatehouse's own application issuing JWT access tokens, an API client
// of its project opaque ones), and alice's token of each kind.
func benchVerifier(b *testing.B) (*bearer.Verifier, benchTokens) {
	b.Helper()
	const secret = "bench-gatehouse-secret"
	cli := devidp.Client{ID: "api-cli", Secret: "cli-secret", RedirectURIs: []string{"http://127.0.0.1:1/cli"}}
	idp := testenv.StartIdP(b, testenv.IdPOptions{Secret: secret, JWTAccessTokens: true, AppURLs: []string{"http://127.0.0.1:1"}, Clients: []devidp.Client{cli}})
	provider := auth.NewProvider(auth.ProviderConfig{Issuer: idp.URL, ClientID: testenv.ClientID, ClientSecret: secret,
		CallbackURL: "http://127.0.0.1:1/auth/callback", Scopes: []string{"openid"}}, &http.Client{Timeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	if err := provider.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	v, err := bearer.New(bearer.Config{Issuer: idp.URL, Audiences: []string{testenv.ClientID}, Introspect: true, CacheTTL: time.Minute}, provider)
	if err != nil {
		b.Fatal(err)
	}
	self := devidp.Client{ID: testenv.ClientID, Secret: secret, RedirectURIs: []string{"http://127.0.0.1:1/auth/callback"}}
	return v, benchTokens{jwt: idp.Tokens(b, self, "alice", devidp.DemoPassword).AccessToken,
		opaque: idp.Tokens(b, cli, "alice", devidp.DemoPassword).AccessToken}
}
