package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// The provider registers only the public half of the application key, so
// it refuses Gatehouse's code exchange and refresh unless each carries a
// client assertion it can verify: signed by that key (kid = keyId), iss
// = sub = the client, aud = the issuer, unexpired, issued within the hour,
// a jti it has not seen, and a lifetime of at most five minutes.
func TestApplicationKey_LoginAndRefreshAuthenticateWithPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	key, parsed := testenv.ApplicationKey(t)
	idp, app := testenv.Setup(t, testenv.IdPOptions{TokenTTL: 2 * time.Second, Key: &key},
		testenv.AppOptions{
			Modify:  func(c *config.Config) { c.ClientKey = parsed },
			Options: server.Options{RefreshSkew: time.Nanosecond},
		})
	b := testenv.NewBrowser(t)
	if r := b.Login(app, "alice", pw); r.StatusCode != http.StatusOK {
		t.Fatalf("login with the application key = %s", r)
	}
	before := idp.Refreshes()
	time.Sleep(2100 * time.Millisecond)
	if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK {
		t.Fatalf("profile after expiry = %s, want 200 after a refresh", r)
	}
	if idp.Refreshes()-before != 1 {
		t.Fatalf("refreshes = %d, want 1", idp.Refreshes()-before)
	}

	// One assertion per token request: the code exchange and every
	// refresh. (expires_in is whole seconds, so a 2 s token may be due
	// already at the login's own page view, on a slow machine or by
	// rounding: then there is one refresh more, with an assertion of its own.)
	assertions := idp.ClientAssertions()
	grants := idp.CodeExchanges() + idp.Refreshes()
	if len(assertions) < 2 || int64(len(assertions)) != grants {
		t.Fatalf("the provider received %d client assertions for %d token requests, want one each (code exchange, refreshes)", len(assertions), grants)
	}
	jtis := map[string]bool{}
	for _, a := range assertions {
		jtis[idp.CheckAssertion(t, a, testenv.ClientID).JWTID] = true
	}
	if len(jtis) != len(assertions) {
		t.Errorf("jti reused across requests: %d assertions, %d distinct jti", len(assertions), len(jtis))
	}
}

// Without the key, the same registration refuses Gatehouse: the test
// above passes because of the assertion, not in spite of it.
func TestApplicationKey_ProviderRefusesTheClientWithoutIt(t *testing.T) {
	t.Parallel()
	key, err := devidp.NewApplicationKey(testenv.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	_, app := testenv.Setup(t, testenv.IdPOptions{Key: &key}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	back := b.LoginAtProvider(b.StartSignIn(app, ""), "alice", pw)
	if r := b.Follow(back); r.StatusCode == http.StatusOK {
		t.Fatalf("a public client logged in where the provider requires private_key_jwt: %s", r)
	}
	// And a key the provider does not know (another keyId) is refused too.
	_, parsed := testenv.ApplicationKey(t)
	_, app2 := testenv.Setup(t, testenv.IdPOptions{Key: &key}, testenv.AppOptions{Modify: func(c *config.Config) { c.ClientKey = parsed }})
	b2 := testenv.NewBrowser(t)
	if r := b2.Follow(b2.LoginAtProvider(b2.StartSignIn(app2, ""), "alice", pw)); r.StatusCode == http.StatusOK {
		t.Fatalf("an unregistered key logged in: %s", r)
	}
}
