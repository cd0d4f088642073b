package auth_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestAvailable_CancelledCallerDoesNotMarkTheProviderDown: the probe's
// answer is cached for everyone, so a caller whose request was cancelled
// (a client that hung up) must not make a reachable provider unavailable
// for the next callers.
func TestAvailable_CancelledCallerDoesNotMarkTheProviderDown(t *testing.T) {
	t.Parallel()
	idp := testenv.StartIdP(t, testenv.IdPOptions{Secret: "provider-test-secret"})
	p := auth.NewProvider(auth.ProviderConfig{Issuer: idp.URL, ClientID: testenv.ClientID, ClientSecret: "provider-test-secret",
		CallbackURL: "http://127.0.0.1:1/auth/callback", Scopes: []string{"openid"}},
		&http.Client{Timeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	if err := p.Connect(context.Background()); err != nil {
		t.Fatalf("connect: %v", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.Available(cancelled) // whatever it answers the caller that left
	if err := p.Available(context.Background()); err != nil {
		t.Fatalf("reachable provider after a cancelled caller's probe: %v", err)
	}
}
