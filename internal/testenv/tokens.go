package testenv

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/devidp"
)

// APIScopes are the scopes an API client asks for in tests: identity,
// e-mail and profile, ZITADEL's roles and organisation.
var APIScopes = []string{"openid", "profile", "email", devidp.ScopeRoles, devidp.ScopeResourceOwner}

// Tokens signs user in at the provider as the application c by itself,
// as a CLI or single-page app would (authorization code with PKCE through
// the provider's real login form, then the token endpoint with c's
// secret, or none), and returns the token response. c must be registered
// with at least one redirect URI; nothing needs to listen there.
func (i *IdP) Tokens(t testing.TB, c devidp.Client, user, password string, scopes ...string) *oauth2.Token {
	t.Helper()
	if len(scopes) == 0 {
		scopes = APIScopes
	}
	ctx := context.Background()
	disc, err := client.Discover(ctx, i.URL, http.DefaultClient)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	conf := &oauth2.Config{
		ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: c.RedirectURIs[0], Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: disc.AuthorizationEndpoint, TokenURL: disc.TokenEndpoint,
			AuthStyle: oauth2.AuthStyleInHeader},
	}
	if c.Secret == "" {
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	verifier := oauth2.GenerateVerifier()
	b := NewBrowser(t)
	back := b.loginOn(b.Follow(b.Get(conf.AuthCodeURL("state-"+c.ID, oauth2.S256ChallengeOption(verifier)))), user, password)
	loc, err := back.Location()
	if err != nil || !strings.HasPrefix(loc.String(), c.RedirectURIs[0]) {
		t.Fatalf("provider did not redirect to %s: %s", c.RedirectURIs[0], back)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in the redirect: %s", back)
	}
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange for %s: %v", c.ID, err)
	}
	return tok
}

// Revoke revokes token at the provider's revocation endpoint (RFC 7009)
// as the application c, which it was issued to.
func (i *IdP) Revoke(t testing.TB, c devidp.Client, token string) {
	t.Helper()
	disc, err := client.Discover(context.Background(), i.URL, http.DefaultClient)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	req, err := http.NewRequest(http.MethodPost, disc.RevocationEndpoint,
		strings.NewReader(url.Values{"token": {token}, "token_type_hint": {"access_token"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke answered %d", resp.StatusCode)
	}
}

// CheckAssertion decodes a client assertion the provider received and
// fails the test unless it is what Gatehouse must send: iss = sub =
// clientID, aud = the issuer alone, a jti, and a lifetime of at most a
// minute. (The provider verified its signature and kid already.)
func (i *IdP) CheckAssertion(t testing.TB, assertion, clientID string) *oidc.JWTTokenRequest {
	t.Helper()
	c := new(oidc.JWTTokenRequest)
	if _, err := oidc.ParseToken(assertion, c); err != nil {
		t.Fatalf("client assertion: %v", err)
	}
	if c.Issuer != clientID || c.Subject != clientID || len(c.Audience) != 1 || c.Audience[0] != i.URL || c.JWTID == "" {
		t.Errorf("client assertion iss %q sub %q aud %v jti %q", c.Issuer, c.Subject, c.Audience, c.JWTID)
	}
	if life := c.ExpiresAt.AsTime().Sub(c.IssuedAt.AsTime()); life <= 0 || life > time.Minute {
		t.Errorf("client assertion lives %v, want at most a minute", life)
	}
	return c
}
