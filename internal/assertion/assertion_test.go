package assertion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	secretA = "0123456789abcdef0123456789abcdef-secret-A"
	secretB = "0123456789abcdef0123456789abcdef-secret-B"
	issuer  = "https://login.example.com"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Unix(1_800_000_000, 0)} }
func claims() Claims {
	return Claims{Audience: "grafana.example.com", Subject: "312909075211944193", Email: "alice@example.com", Roles: []string{"admin", "viewer"}}
}
func mustNew(t testing.TB, o Options) *Signer {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verify checks token the way an upstream would, with go-jose parsing the
// published key set (not the Signer's keys), and returns its claims.
func verify(t *testing.T, jwks []byte, token string, now time.Time, aud string) (map[string]any, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("key set does not parse: %v", err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Algorithm != "ES256" || k.Use != "sig" || k.KeyID == "" {
			t.Fatalf("published key %+v is not a public ES256 signing key with a kid", k)
		}
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, err
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		return nil, errNoKey
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(keys[0].Key, &std, &all); err != nil {
		return nil, err
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{aud}, Time: now}, 0); err != nil {
		return nil, err
	}
	return all, nil
}

var errNoKey = errors.New("kid not in the key set")

func TestAssertion_VerifiesWithThePublishedKeySet(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := mustNew(t, Options{Secret: secretA, Issuer: issuer, Now: c.Now})
	token, err := s.Assertion(claims())
	if err != nil {
		t.Fatal(err)
	}
	got, err := verify(t, s.JWKS(), token, c.Now(), "grafana.example.com")
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got["sub"] != "312909075211944193" || got["email"] != "alice@example.com" || got["iss"] != issuer || got["aud"] != "grafana.example.com" {
		t.Errorf("claims = %v", got)
	}
	if roles, _ := got["roles"].([]any); len(roles) != 2 || roles[0] != "admin" || roles[1] != "viewer" {
		t.Errorf("roles = %v", got["roles"])
	}
	if exp, iat := got["exp"].(float64), got["iat"].(float64); exp-iat != 60 || int64(iat) != c.Now().Unix() {
		t.Errorf("iat %v exp %v: want a 60 s lifetime from now", iat, exp)
	}
	// Checked by hand too, with nothing but crypto/ecdsa and the JWKS's
	// coordinates: the wire format is plain RFC 7515 compact ES256.
	verifyByHand(t, s.JWKS(), token)

	// Another protected host must refuse it; so must anyone a minute later.
	if _, err := verify(t, s.JWKS(), token, c.Now(), "wiki.example.com"); err == nil {
		t.Error("an assertion for grafana verified for wiki")
	}
	if _, err := verify(t, s.JWKS(), token, c.Now().Add(61*time.Second), "grafana.example.com"); err == nil {
		t.Error("an expired assertion verified")
	}
	// A flipped bit in the payload fails.
	parts := strings.Split(token, ".")
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(body), "alice@example.com", "admin@example.com", 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	if _, err := verify(t, s.JWKS(), strings.Join(parts, "."), c.Now(), "grafana.example.com"); err == nil {
		t.Error("a forged payload verified")
	}
}

func verifyByHand(t *testing.T, jwks []byte, token string) {
	t.Helper()
	var set struct {
		Keys []struct{ Kid, Crv, X, Y string }
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	var header struct{ Alg, Kid, Typ string }
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &header); err != nil || header.Alg != "ES256" || header.Typ != "JWT" {
		t.Fatalf("header %s: %v", hb, err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if len(sig) != 64 {
		t.Fatalf("signature is %d bytes, want 64 (R||S)", len(sig))
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	for _, k := range set.Keys {
		if k.Kid != header.Kid {
			continue
		}
		x, _ := base64.RawURLEncoding.DecodeString(k.X)
		y, _ := base64.RawURLEncoding.DecodeString(k.Y)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil || k.Crv != "P-256" {
			t.Fatalf("key %s: %v", k.Kid, err)
		}
		if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatal("signature does not verify with crypto/ecdsa")
		}
		return
	}
	t.Fatalf("kid %q not in the key set", header.Kid)
}

// TestKeys_SameSecretSameKeysOnEveryReplica: two replicas (two Signers)
// with one secret publish the same key set and verify each other's
// assertions; during a rotation the new replicas publish both keys, so an
// assertion from a replica still on the old secret verifies.
func TestKeys_SameSecretSameKeysOnEveryReplica(t *testing.T) {
	t.Parallel()
	c := newClock()
	r1 := mustNew(t, Options{Secret: secretA, Issuer: issuer, Now: c.Now})
	r2 := mustNew(t, Options{Secret: secretA, Issuer: issuer, Now: c.Now})
	if string(r1.JWKS()) != string(r2.JWKS()) || r1.KeyID() != r2.KeyID() {
		t.Fatal("two replicas with one secret publish different keys")
	}
	other := mustNew(t, Options{Secret: secretB, Issuer: issuer, Now: c.Now})
	if other.KeyID() == r1.KeyID() {
		t.Fatal("different secrets gave the same key")
	}
	old, _ := r1.Sign(claims())
	if _, err := verify(t, other.JWKS(), old, c.Now(), "grafana.example.com"); err == nil {
		t.Fatal("an assertion verified under another secret's key set")
	}

	rotated := mustNew(t, Options{Secret: secretB, Previous: secretA, Issuer: issuer, Now: c.Now})
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(rotated.JWKS(), &set)
	if len(set.Keys) != 2 || set.Keys[0].KeyID != other.KeyID() || set.Keys[1].KeyID != r1.KeyID() {
		t.Fatalf("rotation key set: %s", rotated.JWKS())
	}
	if _, err := verify(t, rotated.JWKS(), old, c.Now(), "grafana.example.com"); err != nil {
		t.Fatalf("the old replica's assertion does not verify during rotation: %v", err)
	}
	fresh, _ := rotated.Sign(claims())
	if _, err := verify(t, other.JWKS(), fresh, c.Now(), "grafana.example.com"); err != nil {
		t.Fatalf("the rotated replica does not sign with the new secret's key: %v", err)
	}
}

func TestDeriveKey_IsPurposeSeparatedAndStable(t *testing.T) {
	t.Parallel()
	k1, err := DeriveKey(secretA)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := DeriveKey(secretA)
	if !k1.Equal(k2) {
		t.Fatal("derivation is not deterministic")
	}
	raw, err := k1.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// Unrelated to the keys internal/seal derives from the same secret
	// for sessions and sign-in state (same HKDF, other purposes).
	for _, purpose := range []string{"session", "flow"} {
		sealKey, _ := hkdf.Key(sha256.New, []byte(secretA), []byte("gatehouse"), "gatehouse/"+purpose+"/v1", 32)
		if string(sealKey) == string(raw) {
			t.Fatalf("the assertion key equals the %s key", purpose)
		}
	}
	if k3, _ := DeriveKey(secretB); k3.Equal(k1) {
		t.Fatal("different secrets, same key")
	}
}

// TestAssertion_CacheReusesForHalfTheLifetime: within half the lifetime
// the same claims get the same token (no signing); a change in roles or
// email, another host, or the second half of the lifetime signs anew, so
// an upstream always receives at least 30 s of validity.
func TestAssertion_CacheReusesForHalfTheLifetime(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := mustNew(t, Options{Secret: secretA, Issuer: issuer, Now: c.Now})
	first, _ := s.Assertion(claims())
	c.Add(29 * time.Second)
	if again, _ := s.Assertion(claims()); again != first {
		t.Error("not reused within half the lifetime")
	}
	changed := claims()
	changed.Roles = []string{"viewer"}
	if other, _ := s.Assertion(changed); other == first {
		t.Error("reused after the roles changed")
	}
	host := claims()
	host.Audience = "wiki.example.com"
	if other, _ := s.Assertion(host); other == first {
		t.Error("reused for another host")
	}
	c.Add(2 * time.Second)
	later, _ := s.Assertion(claims())
	if later == first {
		t.Error("reused after half the lifetime")
	}
	got, err := verify(t, s.JWKS(), later, c.Now().Add(29*time.Second), "grafana.example.com")
	if err != nil || got["iat"].(float64) != float64(c.Now().Unix()) {
		t.Errorf("renewed assertion: %v, %v", got, err)
	}
}

// TestAssertion_ReusedOnlyWithHalfItsLifetimeLeft: exp is whole seconds,
// cut down; signed late in a second, an assertion has less than its TTL
// to live, and reuse must count from the exp it carries: never past exp
// (a TTL of 1 s), never with less than half the TTL left.
func TestAssertion_ReusedOnlyWithHalfItsLifetimeLeft(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{time.Second, MaxTTL} {
		for _, at := range []time.Duration{0, 500 * time.Millisecond, 999 * time.Millisecond} {
			c := &clock{t: time.Unix(1_800_000_000, 0).Add(at)}
			s := mustNew(t, Options{Secret: secretA, Issuer: issuer, TTL: ttl, Now: c.Now})
			first, _ := s.Assertion(claims())
			for step := time.Duration(0); step <= ttl; step += 100 * time.Millisecond {
				now := c.Now()
				got, _ := s.Assertion(claims())
				exp := time.Unix(int64(payloadOf(t, got)["exp"].(float64)), 0)
				if got == first && exp.Sub(now) < ttl/2 {
					t.Errorf("TTL %v, signed at +%v: reused at +%v with %v left, want at least %v", ttl, at, now.Sub(time.Unix(1_800_000_000, 0)), exp.Sub(now), ttl/2)
				}
				c.Add(100 * time.Millisecond)
			}
		}
	}
}

func TestAssertion_NamesTheAPIClientAndCachesItApart(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := mustNew(t, Options{Secret: secretA, Issuer: issuer, Now: c.Now})
	first, _ := s.Assertion(claims())
	// The same person through an API client: its own assertion, naming the
	// client (azp), reused as well; the session's stays.
	api := claims()
	api.Client = "312909075211944194"
	viaAPI, _ := s.Assertion(api)
	if viaAPI == first {
		t.Error("a session's assertion reused for an API client's call")
	}
	if again, _ := s.Assertion(api); again != viaAPI {
		t.Error("an API client's assertion not reused")
	}
	if again, _ := s.Assertion(claims()); again != first {
		t.Error("the session's assertion was displaced by the API client's")
	}
	got, err := verify(t, s.JWKS(), viaAPI, c.Now(), "grafana.example.com")
	if err != nil || got["azp"] != "312909075211944194" || got["sub"] != "312909075211944193" {
		t.Errorf("API client's assertion: %v, %v", got, err)
	}
	if got, _ := verify(t, s.JWKS(), first, c.Now(), "grafana.example.com"); got["azp"] != nil {
		t.Errorf("a session's assertion names a client: %v", got["azp"])
	}
}

// TestAssertion_IsHeaderSafeWhateverTheClaims: an assertion is base64url
// and dots only, whatever the claims hold, so forward.WriteIdentity can
// put it in a header without scanning it.
func TestAssertion_IsHeaderSafeWhateverTheClaims(t *testing.T) {
	t.Parallel()
	s := mustNew(t, Options{Secret: secretA, Issuer: issuer, Now: newClock().Now})
	c := claims()
	c.Subject, c.Email, c.Roles = "u1\r\nX-Evil: 1", "a@example.com\x00\x7f", []string{"a,b", "jürgen", "\n"}
	token, err := s.Assertion(c)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(token); i++ {
		if b := token[i]; !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.') {
			t.Fatalf("assertion byte %d is %q: not base64url or a dot", i, b)
		}
	}
	if strings.Count(token, ".") != 2 {
		t.Errorf("assertion %q: want three compact JWS parts", token)
	}
}

func TestAssertion_CacheIsBounded(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := mustNew(t, Options{Secret: secretA, Issuer: issuer, Now: c.Now, CacheSize: 50})
	for i := range 500 {
		cl := claims()
		cl.Subject = "user-" + string(rune('a'+i%26)) + strings.Repeat("x", i)
		if _, err := s.Assertion(cl); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		n := len(s.cache)
		s.mu.Unlock()
		if n > 50 {
			t.Fatalf("cache holds %d entries, bound 50", n)
		}
	}
}

func TestNew_RefusesBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{Secret: "", Issuer: issuer},
		{Secret: secretA},
		{Secret: secretA, Issuer: issuer, TTL: 61 * time.Second},
		{Secret: secretA, Issuer: issuer, TTL: time.Millisecond},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	s := mustNew(t, Options{Secret: secretA, Issuer: issuer})
	if _, err := s.Sign(Claims{Subject: "u"}); err == nil {
		t.Error("an assertion without audience was signed")
	}
}

func TestJWKSHandler(t *testing.T) {
	t.Parallel()
	s := mustNew(t, Options{Secret: secretA, Previous: secretB, Issuer: issuer})
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		s.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(m, "/auth/jwks.json", nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "public, max-age=300" {
			t.Fatalf("%s: %d %v", m, rec.Code, rec.Header())
		}
		if m == http.MethodGet && rec.Body.String() != string(s.JWKS()) {
			t.Fatalf("body %q", rec.Body)
		}
		if m == http.MethodHead && rec.Body.Len() != 0 {
			t.Fatal("HEAD has a body")
		}
	}
	if strings.Contains(string(s.JWKS()), `"d"`) {
		t.Fatal("the key set contains a private key")
	}
}

func BenchmarkAssertion_Sign(b *testing.B) {
	s := mustNew(b, Options{Secret: secretA, Issuer: issuer})
	c := claims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAssertion_Cached(b *testing.B) {
	s := mustNew(b, Options{Secret: secretA, Issuer: issuer})
	c := claims()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Assertion(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// payloadOf is token's claims, unverified.
func payloadOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	if err != nil || json.Unmarshal(body, &m) != nil {
		t.Fatalf("payload of %q: %v", token, err)
	}
	return m
}
