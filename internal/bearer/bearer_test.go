package bearer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/bearer"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestVerify_JWTAccessTokenFromTheProvider_AllowedWithZitadelIdentity(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	tok := f.token(t, self)
	if strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("the provider issued an opaque token to a JWT client")
	}
	res := f.verify(t, tok.AccessToken)
	wantOutcome(t, res, bearer.Allowed, "")
	if res.Credential != bearer.CredentialJWT || res.Cached {
		t.Fatalf("credential %q cached %v, want a fresh jwt verification", res.Credential, res.Cached)
	}
	id := res.Identity
	if id.Subject != alice().ID || id.OrgID != devidp.DemoOrgID || id.ClientID != testenv.ClientID {
		t.Errorf("identity = %+v", id)
	}
	if !id.HasRole("admin") || !id.HasRole("viewer") || !id.HasRoleInOrg("admin", devidp.DemoOrgID) ||
		id.Roles["admin"][devidp.DemoOrgID] != devidp.DemoOrgDomain || id.HasRoleInOrg("admin", "1") || id.HasRole("owner") {
		t.Errorf("roles = %v, want admin and viewer granted by the demo organisation", id.Roles)
	}
	if d := id.Expiry.Sub(tok.Expiry); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("expiry %v, token response says %v", id.Expiry, tok.Expiry)
	}
	if again := f.verify(t, tok.AccessToken); again.Outcome != bearer.Allowed || !again.Cached || again.Identity != id {
		t.Errorf("second verification: %v cached %v", again.Outcome, again.Cached)
	}
}

func TestVerify_OpaqueTokenOfAnotherAppOfTheProject_OneIntrospectionThenCache(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	tok := f.token(t, cli)
	if strings.Count(tok.AccessToken, ".") == 2 {
		t.Fatalf("the provider issued a JWT to an opaque-token client")
	}
	before := f.idp.Introspections()
	res := f.verify(t, tok.AccessToken)
	wantOutcome(t, res, bearer.Allowed, "")
	if res.Credential != bearer.CredentialOpaque || res.Cached {
		t.Fatalf("credential %q cached %v", res.Credential, res.Cached)
	}
	if n := f.idp.Introspections() - before; n != 1 {
		t.Fatalf("a cold opaque token cost %d introspection calls, want exactly 1", n)
	}
	id := res.Identity
	if id.Subject != alice().ID || id.Email != alice().Email || id.PreferredUsername != "alice" ||
		id.OrgID != devidp.DemoOrgID || id.ClientID != cli.ID || !id.HasRole("admin") {
		t.Errorf("identity = %+v", id)
	}
	if !contains(id.Scopes, "openid") || !contains(id.Scopes, devidp.ScopeRoles) {
		t.Errorf("scopes = %v", id.Scopes)
	}
	for range 5 {
		if r := f.verify(t, tok.AccessToken); r.Outcome != bearer.Allowed || !r.Cached {
			t.Fatalf("repeat: %v cached %v", r.Outcome, r.Cached)
		}
	}
	if n := f.idp.Introspections() - before; n != 1 {
		t.Fatalf("cached token made %d introspection calls in all, want 1", n)
	}
}

func TestVerify_CacheTTLZero_AsksEveryTime(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{noCache: true})
	tok := f.token(t, cli).AccessToken
	before := f.idp.Introspections()
	for range 3 {
		if r := f.verify(t, tok); r.Outcome != bearer.Allowed || r.Cached {
			t.Fatalf("%v cached %v", r.Outcome, r.Cached)
		}
	}
	if n := f.idp.Introspections() - before; n != 3 {
		t.Fatalf("%d introspection calls for 3 requests with INTROSPECTION_CACHE_TTL=0s", n)
	}
}

func TestVerify_ConcurrentRequestsForOneToken_MakeOneIntrospection(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	tok := f.token(t, cli).AccessToken
	before := f.idp.Introspections()
	release := f.idp.HoldIntrospection()
	defer release()

	const n = 40
	var done sync.WaitGroup
	results := make([]bearer.Result, n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			results[i] = f.v.Verify(context.Background(), "Bearer "+tok)
		}()
	}
	// The provider holds the first call until release: once all n wait
	// on it, none can have found a cached answer.
	deadline := time.Now().Add(30 * time.Second)
	for bearer.Waiting(f.v) < n {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s only %d of %d requests wait on the introspection call", bearer.Waiting(f.v), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	done.Wait()

	for _, r := range results {
		if r.Outcome != bearer.Allowed || r.Cached {
			t.Fatalf("outcome %v reason %q cached %v (%v), want allowed by the shared call", r.Outcome, r.Reason, r.Cached, r.Err)
		}
	}
	if got := f.idp.Introspections() - before; got != 1 {
		t.Fatalf("%d concurrent requests for one token made %d introspection calls, want 1", n, got)
	}
}

func TestVerify_ApplicationKey_IntrospectsWithPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	key, err := devidp.NewApplicationKey(testenv.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, fixtureOptions{key: &key})
	before := len(f.idp.ClientAssertions())
	res := f.verify(t, f.token(t, cli).AccessToken)
	wantOutcome(t, res, bearer.Allowed, "")
	assertions := f.idp.ClientAssertions()[before:]
	if len(assertions) != 1 {
		t.Fatalf("introspection sent %d client assertions, want 1", len(assertions))
	}
	// The provider verified it (signature with the registered public key,
	// kid, iss = sub = client, aud = issuer, exp, a jti not seen before):
	// the answer was active. The claims once more from here:
	f.idp.CheckAssertion(t, assertions[0], testenv.ClientID)
}

func TestVerify_ProviderDown_OpaqueIs503UnlessCached_JWTStillLocal(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	cached := f.token(t, cli).AccessToken
	fresh := f.token(t, cli).AccessToken
	wantOutcome(t, f.verify(t, cached), bearer.Allowed, "")
	wantOutcome(t, f.verify(t, f.token(t, self).AccessToken), bearer.Allowed, "")
	jwt := f.token(t, self).AccessToken // never seen before

	f.idp.Stop()
	wantOutcome(t, f.verify(t, fresh), bearer.Unavailable, bearer.ReasonProviderDown)
	if r := f.verify(t, cached); r.Outcome != bearer.Allowed || !r.Cached {
		t.Errorf("a cached answer during the outage: %v cached %v", r.Outcome, r.Cached)
	}
	// With the keys known, a JWT is judged without the provider.
	if r := f.verify(t, jwt); r.Outcome != bearer.Allowed || r.Cached {
		t.Errorf("a new JWT during the outage: %v cached %v (%v)", r.Outcome, r.Cached, r.Err)
	}
	// A key the provider never published cannot be looked up now: 503, not 401.
	forged := signWithUnknownKey(t, f, "kid-during-outage", validClaims(f))
	wantOutcome(t, f.verify(t, forged), bearer.Unavailable, bearer.ReasonProviderDown)

	f.idp.Start(t)
	wantOutcome(t, f.verify(t, fresh), bearer.Allowed, "")
}

// TestVerify_KeyRotatedRightAfterConnect_PickedUpAtOnce: Connect loads
// the key set the verifiers share, so the first tokens cost no fetch and
// the key-set rate limit's one refetch per 5 s is left for a rotated key.
func TestVerify_KeyRotatedRightAfterConnect_PickedUpAtOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	fetches := f.idp.KeyFetches()
	wantOutcome(t, f.verify(t, sign(t, f, validClaims(f))), bearer.Allowed, "")
	if n := f.idp.KeyFetches() - fetches; n != 0 {
		t.Errorf("the first JWT after Connect fetched the key set %d times; Connect loads it", n)
	}
	if err := f.idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, f.verify(t, sign(t, f, validClaims(f))), bearer.Allowed, "")
}

func TestVerify_BeforeTheProviderIsConnected_Unavailable(t *testing.T) {
	t.Parallel()
	idp := testenv.StartIdP(t, testenv.IdPOptions{Secret: secret, AppURLs: []string{appOrigin}, Clients: []devidp.Client{cli}})
	provider := auth.NewProvider(auth.ProviderConfig{Issuer: idp.URL, ClientID: testenv.ClientID, ClientSecret: secret},
		http.DefaultClient, nil)
	v, err := bearer.New(bearer.Config{Issuer: idp.URL, Audiences: []string{testenv.ClientID}, Introspect: true, CacheTTL: time.Minute}, provider)
	if err != nil {
		t.Fatal(err)
	}
	opaque := idp.Tokens(t, cli, "alice", devidp.DemoPassword).AccessToken
	wantOutcome(t, v.Verify(context.Background(), "Bearer "+opaque), bearer.Unavailable, bearer.ReasonProviderDown)
	jwt, err := idp.SignJWT(map[string]any{"iss": idp.URL, "sub": "x", "aud": testenv.ClientID,
		"exp": time.Now().Add(time.Hour).Unix()}, "")
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, v.Verify(context.Background(), "Bearer "+jwt), bearer.Unavailable, bearer.ReasonProviderDown)
}

func TestVerify_PublicClient_OpaqueTokensAreInvalidWithoutCalling(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{noOpaque: true})
	before := f.idp.Introspections()
	wantOutcome(t, f.verify(t, f.token(t, cli).AccessToken), bearer.InvalidToken, bearer.ReasonOpaqueUnsupported)
	if f.idp.Introspections() != before {
		t.Error("introspected without credentials")
	}
}

func TestVerify_ProjectAudienceAndProjectRoles(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{projectID: devidp.DemoProjectID})
	projectRoles := "urn:zitadel:iam:org:project:" + devidp.DemoProjectID + ":roles"
	otherRoles := "urn:zitadel:iam:org:project:900000000000000009:roles"
	grant := map[string]any{"admin": map[string]any{devidp.DemoOrgID: devidp.DemoOrgDomain}}

	// aud names the project only (ZITADEL adds the project ID to aud).
	c := validClaims(f)
	c["aud"] = []string{"some-other-app", devidp.DemoProjectID}
	c[projectRoles] = grant
	res := f.verify(t, sign(t, f, c))
	wantOutcome(t, res, bearer.Allowed, "")
	if !res.Identity.HasRole("admin") {
		t.Errorf("roles %v, want admin from %s", res.Identity.Roles, projectRoles)
	}

	// Roles granted in another project (and the generic claim, which is
	// the requesting app's project) do not count for this one.
	c = validClaims(f)
	c[otherRoles] = grant
	c["urn:zitadel:iam:org:project:roles"] = grant
	res = f.verify(t, sign(t, f, c))
	wantOutcome(t, res, bearer.Allowed, "")
	if len(res.Identity.Roles) != 0 {
		t.Errorf("roles %v from another project's claim", res.Identity.Roles)
	}
}

func TestVerifyRequest_OnlyTheAuthorizationHeaderCounts(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	tok := f.token(t, cli).AccessToken
	before := f.idp.Introspections()

	inQuery := httptest.NewRequest(http.MethodGet, "/api?access_token="+url.QueryEscape(tok), nil)
	if _, ok := f.v.VerifyRequest(inQuery); ok {
		t.Error("a token in the query string was judged")
	}
	inBody := httptest.NewRequest(http.MethodPost, "/api", strings.NewReader("access_token="+url.QueryEscape(tok)))
	inBody.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, ok := f.v.VerifyRequest(inBody); ok {
		t.Error("a token in a form body was judged")
	}
	if f.idp.Introspections() != before {
		t.Fatal("a token outside the header reached the provider")
	}
	inHeader := httptest.NewRequest(http.MethodGet, "/api", nil)
	inHeader.Header.Set("Authorization", "bearer "+tok) // the scheme is case-insensitive
	if res, ok := f.v.VerifyRequest(inHeader); !ok || res.Outcome != bearer.Allowed {
		t.Fatalf("header token: ok %v outcome %v (%v)", ok, res.Outcome, res.Err)
	}
}

func TestVerify_MalformedHeaders(t *testing.T) {
	t.Parallel()
	v, err := bearer.New(bearer.Config{Issuer: "https://issuer.example", Audiences: []string{"c"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Bearer a b", "Bearer tok\x00en",
		"Bearer ====", "Bearer tök", "Bearer a,b", "Bearer\ttoken", `Bearer "quoted"`} {
		res := v.Verify(context.Background(), h)
		if res.Outcome != bearer.InvalidToken || res.Reason != bearer.ReasonMalformed {
			t.Errorf("%q: %v %q", h, res.Outcome, res.Reason)
		}
		if res.WWWAuthenticate() != `Bearer error="invalid_token"` {
			t.Errorf("%q: WWW-Authenticate %q", h, res.WWWAuthenticate())
		}
	}
}

func newRequest(target string) *http.Request {
	return httptest.NewRequest(http.MethodGet, target, nil)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestIsBearer_TheSchemeCaseInsensitiveWithOrWithoutAToken(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]bool{
		"Bearer abc": true, "bearer abc": true, "BEARER abc": true, "Bearer  abc": true,
		"Bearer": true, "bearer": true, "Bearer ": true, // the token missing: judged, and malformed
		"": false, "Bear": false, "Bearerabc": false, "Bearer\tabc": false, "Basic dXNlcjpwdw==": false, "DPoP abc": false,
		" Bearer abc": false,
	} {
		if got := bearer.IsBearer(h); got != want {
			t.Errorf("IsBearer(%q) = %v, want %v", h, got, want)
		}
	}
}
