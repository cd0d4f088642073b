package bearer_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/internal/bearer"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// Each hostile token differs from a good one in one way, and is signed by
// the provider's real key unless the attack is about the signature.

func validClaims(f *fixture) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": f.idp.URL, "sub": alice().ID, "aud": []string{testenv.ClientID}, "client_id": testenv.ClientID,
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(), "jti": fmt.Sprint(now.UnixNano()),
	}
}

func sign(t testing.TB, f *fixture, claims map[string]any) string {
	t.Helper()
	tok, err := f.idp.SignJWT(claims, "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forgedTokens are n valid-looking tokens signed by one key the provider
// never published, naming kids forged-0 … forged-(n-1).
func forgedTokens(t testing.TB, f *fixture, n int) []string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tokens := make([]string, n)
	for i := range tokens {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
			(&jose.SignerOptions{}).WithHeader("kid", fmt.Sprintf("forged-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(validClaims(f))
		jws, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		tokens[i], _ = jws.CompactSerialize()
	}
	return tokens
}

func signWithUnknownKey(t testing.TB, f *fixture, kid string, claims map[string]any) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

// unsigned builds header.payload.signature by hand, for algorithms no
// honest library signs with.
func unsigned(header, claims map[string]any, sig func(signingInput string) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(sig(input))
}

func TestHostile_ValidControlToken_Allowed(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	wantOutcome(t, f.verify(t, sign(t, f, validClaims(f))), bearer.Allowed, "")
}

func TestHostile_Expired(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	c := validClaims(f)
	c["exp"] = time.Now().Add(-time.Second).Unix()
	wantOutcome(t, f.verify(t, sign(t, f, c)), bearer.InvalidToken, bearer.ReasonExpired)

	// A real token from the provider, once its time is up (and a verdict
	// cached while it was valid ends with it).
	real := f.token(t, self)
	wantOutcome(t, f.verify(t, real.AccessToken), bearer.Allowed, "")
	f.clock.Advance(time.Until(real.Expiry) + time.Second)
	wantOutcome(t, f.verify(t, real.AccessToken), bearer.InvalidToken, bearer.ReasonExpired)
}

func TestHostile_NotYetValid(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	c := validClaims(f)
	c["nbf"] = time.Now().Add(5 * time.Minute).Unix()
	wantOutcome(t, f.verify(t, sign(t, f, c)), bearer.InvalidToken, bearer.ReasonNotYetValid)
	c = validClaims(f)
	c["nbf"] = time.Now().Add(3 * time.Second).Unix() // within the clock-skew leeway
	wantOutcome(t, f.verify(t, sign(t, f, c)), bearer.Allowed, "")
}

func TestHostile_WrongIssuer(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	for _, iss := range []string{"https://evil.example", f.idp.URL + "/", strings.ToUpper(f.idp.URL), ""} {
		c := validClaims(f)
		c["iss"] = iss
		wantOutcome(t, f.verify(t, sign(t, f, c)), bearer.InvalidToken, bearer.ReasonWrongIssuer)
	}
}

func TestHostile_WrongAudience(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	// A real JWT the provider issued to another application.
	other := f.token(t, jwtApp).AccessToken
	wantOutcome(t, f.verify(t, other), bearer.InvalidToken, bearer.ReasonWrongAudience)
	for _, aud := range []any{"someone-else", []string{}, nil, []string{testenv.ClientID + "x"}} {
		c := validClaims(f)
		c["aud"] = aud
		wantOutcome(t, f.verify(t, sign(t, f, c)), bearer.InvalidToken, bearer.ReasonWrongAudience)
	}
	// An opaque token of another project: the provider says inactive.
	wantOutcome(t, f.verify(t, f.token(t, stranger).AccessToken), bearer.InvalidToken, bearer.ReasonInactive)
}

func TestHostile_IDTokenAsAccessToken(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	// A real ID token of Gatehouse's own client: same signing key, same
	// audience, same typ as its JWT access tokens.
	tok := f.token(t, self)
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		t.Fatal("no ID token in the token response")
	}
	wantOutcome(t, f.verify(t, idToken), bearer.InvalidToken, bearer.ReasonNotAccessToken)
	wantOutcome(t, f.verify(t, tok.AccessToken), bearer.Allowed, "")
}

// TestHostile_LogoutTokenAsAccessToken: a back-channel logout token is
// signed by the provider's key for Gatehouse's client and names a user;
// it must not pass as that user's access token, by its typ or, with a
// plain typ, by its events claim.
func TestHostile_LogoutTokenAsAccessToken(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	claims := f.idp.LogoutTokenClaims(testenv.ClientID, alice().ID)
	for _, typ := range []string{"logout+jwt", "JWT"} {
		tok, err := f.idp.SignJWT(claims, typ)
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, f.verify(t, tok), bearer.InvalidToken, bearer.ReasonNotAccessToken)
	}
	// The typs access tokens carry still pass.
	for _, typ := range []string{"JWT", "at+jwt", "application/at+jwt", "AT+JWT"} {
		tok, err := f.idp.SignJWT(validClaims(f), typ)
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, f.verify(t, tok), bearer.Allowed, "")
	}
}

func TestHostile_AlgNone(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	for _, alg := range []string{"none", "None", "NONE"} {
		tok := unsigned(map[string]any{"alg": alg, "typ": "JWT", "kid": f.idp.SigningKeyID()}, validClaims(f),
			func(string) []byte { return nil })
		wantOutcome(t, f.verify(t, tok), bearer.InvalidToken, bearer.ReasonUnsupportedAlg)
	}
}

func TestHostile_HS256SignedWithThePublicKey(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	// The attacker knows the provider's public key (it is published) and
	// uses its encodings as an HMAC secret, hoping the verifier feeds the
	// same bytes to HMAC because the header says HS256.
	pub := publishedKey(t, f)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: f.idp.SigningKeyID()})
	for name, secret := range map[string][]byte{"pem": pemKey, "der": der, "jwk": jwk} {
		for _, alg := range []string{"HS256", "HS384", "HS512"} {
			tok := unsigned(map[string]any{"alg": alg, "typ": "JWT", "kid": f.idp.SigningKeyID()}, validClaims(f),
				func(in string) []byte {
					m := hmac.New(sha256.New, secret)
					m.Write([]byte(in))
					return m.Sum(nil)
				})
			res := f.verify(t, tok)
			if res.Outcome != bearer.InvalidToken || res.Reason != bearer.ReasonUnsupportedAlg {
				t.Errorf("%s keyed with the %s public key: %v %q", alg, name, res.Outcome, res.Reason)
			}
		}
	}
}

// publishedKey fetches the provider's current public key from its key set endpoint.
func publishedKey(t testing.TB, f *fixture) *rsa.PublicKey {
	t.Helper()
	var set jose.JSONWebKeySet
	resp, err := testenv.NewBrowser(t).Client.Get(f.idp.URL + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Key(f.idp.SigningKeyID()) {
		if pub, ok := k.Key.(*rsa.PublicKey); ok {
			return pub
		}
	}
	t.Fatal("current signing key not published")
	return nil
}

// TestHostile_UnknownKid_RefetchIsRateLimited: however many kids forged
// tokens name, the key set is fetched at most once per 5 s (issue 15), and
// at least once: a kid not yet known may be a rotated key.
func TestHostile_UnknownKid_RefetchIsRateLimited(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	wantOutcome(t, f.verify(t, sign(t, f, validClaims(f))), bearer.Allowed, "")
	const n = 40
	forged := forgedTokens(t, f, n) // signed beforehand: the 5 s window is for verifying them
	before, start := f.idp.KeyFetches(), time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := f.v.Verify(context.Background(), "Bearer "+forged[i])
			if res.Outcome != bearer.InvalidToken || res.Reason != bearer.ReasonUnknownKey {
				t.Errorf("forged kid %d: %v %q (%v)", i, res.Outcome, res.Reason, res.Err)
			}
		}()
	}
	wg.Wait()
	allowed := 1 + int64(time.Since(start)/(5*time.Second)) // 1 unless this machine took 5 s for 40 refusals
	if got := f.idp.KeyFetches() - before; got < 1 || got > allowed {
		t.Fatalf("%d tokens with unknown kids caused %d key-set fetches; want at least 1 (a rotated key is looked up) and at most %d (one per 5 s)", n, got, allowed)
	}
	// A rotated key is still picked up: the refetch is limited, not off.
	if err := f.idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(12 * time.Second)
	for {
		res := f.verify(t, sign(t, f, validClaims(f)))
		if res.Outcome == bearer.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a token signed with the rotated key never verified: %v %q", res.Outcome, res.Reason)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestHostile_RevokedOpaqueToken_CacheNeverOutlivesItsTTL(t *testing.T) {
	t.Parallel()
	const ttl = 30 * time.Second
	f := setup(t, fixtureOptions{cacheTTL: ttl})
	tok := f.token(t, cli).AccessToken
	before := f.idp.Introspections()
	wantOutcome(t, f.verify(t, tok), bearer.Allowed, "")

	f.idp.Revoke(t, cli, tok)
	// Within the TTL the cached answer stands (that is the cache's price)…
	f.clock.Advance(ttl - 5*time.Second)
	if r := f.verify(t, tok); r.Outcome != bearer.Allowed || !r.Cached {
		t.Fatalf("within the TTL: %v cached %v", r.Outcome, r.Cached)
	}
	// …and not longer.
	f.clock.Advance(5 * time.Second)
	res := f.verify(t, tok)
	wantOutcome(t, res, bearer.InvalidToken, bearer.ReasonInactive)
	if res.Cached {
		t.Fatal("the revocation was seen from the cache")
	}
	if n := f.idp.Introspections() - before; n != 2 {
		t.Fatalf("%d introspection calls, want 2 (first use, after the TTL)", n)
	}
	// The inactive answer is cached briefly, then asked again.
	if r := f.verify(t, tok); r.Outcome != bearer.InvalidToken || !r.Cached {
		t.Fatalf("repeat of the revoked token: %v cached %v", r.Outcome, r.Cached)
	}
	f.clock.Advance(11 * time.Second)
	wantOutcome(t, f.verify(t, tok), bearer.InvalidToken, bearer.ReasonInactive)
	if n := f.idp.Introspections() - before; n != 3 {
		t.Fatalf("%d introspection calls, want 3", n)
	}
}

func TestHostile_OneMegabyteToken_RefusedBeforeParsing(t *testing.T) {
	// Not parallel: testing.AllocsPerRun needs the process to itself.
	f := setup(t, fixtureOptions{})
	huge := "Bearer " + strings.Repeat("A", 1<<20)
	hugeJWT := "Bearer eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", 1<<20) + ".sig"
	keys, intro := f.idp.KeyFetches(), f.idp.Introspections()
	for _, h := range []string{huge, hugeJWT} {
		res := f.v.Verify(context.Background(), h)
		wantOutcome(t, res, bearer.InvalidToken, bearer.ReasonTooLong)
		if allocs := testing.AllocsPerRun(10, func() { f.v.Verify(context.Background(), h) }); allocs != 0 {
			t.Errorf("refusing a 1 MB token allocated %v times: it was looked at", allocs)
		}
	}
	if f.idp.KeyFetches() != keys || f.idp.Introspections() != intro {
		t.Fatal("a 1 MB token reached the provider")
	}
	// The limit is about size, not kind: a token just under it is judged.
	long := "Bearer " + strings.Repeat("A", bearer.MaxTokenLength)
	if res := f.v.Verify(context.Background(), long); res.Reason == bearer.ReasonTooLong {
		t.Fatalf("a token of exactly MaxTokenLength was refused as too long")
	}
}

func TestHostile_TokenInQueryString_Ignored(t *testing.T) {
	t.Parallel()
	// See TestVerifyRequest_OnlyTheAuthorizationHeaderCounts for the
	// form body; here the query string of an otherwise anonymous request.
	f := setup(t, fixtureOptions{})
	tok := f.token(t, self).AccessToken
	for _, q := range []string{"access_token", "token", "bearer", "Authorization"} {
		req := newRequest("/api?" + q + "=" + tok)
		if res, ok := f.v.VerifyRequest(req); ok {
			t.Errorf("?%s=<token> was judged: %v", q, res.Outcome)
		}
	}
}
