// Package assertion signs the short-lived identity assertion a protected
// app receives in X-Gatehouse-Assertion: a JWT (ES256) saying who is
// calling, for which host, until when; and publishes the public keys at
// /auth/jwks.json so an app reachable without the proxy can still verify
// who is calling.
//
// Keys need no configuration: the ES256 key is derived from SESSION_SECRET
// with HKDF under its own purpose ("gatehouse/assertion-es256/v1", unrelated
// to the session and sign-in keys), so every replica with the same secret
// signs with the same key and publishes the same key set. During a secret
// rotation the previous secret's key is published too (it keeps verifying
// what replicas not yet rolled signed) while the current one signs.
package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MaxTTL is the longest an assertion may live: long enough for clock skew
// and a slow upstream, short enough that a leaked one is soon worthless.
const MaxTTL = 60 * time.Second

// Options configure a Signer.
type Options struct {
	// Secret and Previous are SESSION_SECRET and SESSION_SECRET_PREVIOUS.
	Secret, Previous string
	// Issuer is Gatehouse's public origin (iss), e.g. https://login.example.com.
	Issuer string
	// TTL is the assertions' lifetime, 1 s to MaxTTL (default MaxTTL).
	TTL time.Duration
	// CacheSize bounds the assertions kept for reuse (default 4096; about
	// 1 KB each). Negative: no cache, every call signs.
	CacheSize int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Claims are what an assertion says.
type Claims struct {
	Audience string   // the protected host (aud), e.g. grafana.example.com
	Subject  string   // sub
	Email    string   // email, omitted when empty
	Roles    []string // project role names, sorted
	// Client is the application a bearer token was issued to (azp),
	// omitted for a browser session: an upstream tells an API client's
	// call from a person's by it.
	Client string
}

// payload is the JWT's claim set.
type payload struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience string   `json:"aud"`
	Email    string   `json:"email,omitempty"`
	Roles    []string `json:"roles"`
	Client   string   `json:"azp,omitempty"`
	IssuedAt int64    `json:"iat"`
	Expiry   int64    `json:"exp"`
}

// Signer signs assertions and serves the key set.
type Signer struct {
	signer jose.Signer
	kid    string
	jwks   []byte
	issuer string
	ttl    time.Duration
	now    func() time.Time

	max   int
	mu    sync.Mutex
	cache map[cacheKey]*entry
}

type cacheKey struct{ aud, sub, client string }

type entry struct {
	email string
	roles []string
	token string
	until time.Time // reused until then: half its lifetime, so upstreams always get at least TTL/2
}

// New derives the keys and prepares the key set.
func New(o Options) (*Signer, error) {
	if o.Secret == "" {
		return nil, errors.New("assertion: empty secret")
	}
	if o.Issuer == "" {
		return nil, errors.New("assertion: empty issuer")
	}
	if o.TTL == 0 {
		o.TTL = MaxTTL
	}
	if o.TTL < time.Second || o.TTL > MaxTTL {
		return nil, fmt.Errorf("assertion: lifetime %v outside 1s..%v", o.TTL, MaxTTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheSize == 0 {
		o.CacheSize = 4096
	}
	var set jose.JSONWebKeySet
	var current *ecdsa.PrivateKey
	var kid string
	for _, secret := range []string{o.Secret, o.Previous} {
		if secret == "" {
			continue
		}
		key, err := DeriveKey(secret)
		if err != nil {
			return nil, err
		}
		jwk := jose.JSONWebKey{Key: key.Public(), Algorithm: string(jose.ES256), Use: "sig"}
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("assertion: key thumbprint: %w", err)
		}
		jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
		if current == nil {
			current, kid = key, jwk.KeyID
		}
		if !slices.ContainsFunc(set.Keys, func(k jose.JSONWebKey) bool { return k.KeyID == jwk.KeyID }) {
			set.Keys = append(set.Keys, jwk)
		}
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("assertion: key set: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: current},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		return nil, fmt.Errorf("assertion: signer: %w", err)
	}
	return &Signer{
		signer: signer, kid: kid, jwks: jwks, issuer: o.Issuer, ttl: o.TTL, now: o.Now,
		max: o.CacheSize, cache: make(map[cacheKey]*entry),
	}, nil
}

// DeriveKey is the ES256 key for secret: HKDF-SHA-256 output under the
// assertion purpose, taken as a P-256 scalar; the rare output that is not
// a valid scalar (about 2^-32) is skipped by deriving again with a counter.
func DeriveKey(secret string) (*ecdsa.PrivateKey, error) {
	for i := 0; i < 16; i++ {
		info := "gatehouse/assertion-es256/v1"
		if i > 0 {
			info += "/" + strconv.Itoa(i)
		}
		b, err := hkdf.Key(sha256.New, []byte(secret), []byte("gatehouse"), info, 32)
		if err != nil {
			return nil, fmt.Errorf("assertion: derive key: %w", err)
		}
		if key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b); err == nil {
			return key, nil
		}
	}
	return nil, errors.New("assertion: no valid key derived") // 16 invalid scalars in a row: not in this universe
}

// KeyID is the kid of the signing key (its RFC 7638 thumbprint).
func (s *Signer) KeyID() string { return s.kid }

// TTL is the assertions' lifetime.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Assertion returns a signed assertion for c. One signed for the same
// audience, subject and client with the same email and roles is reused for the
// first half of its lifetime: signing costs tens of microseconds, a
// lookup nothing (BenchmarkAssertion_Sign vs BenchmarkAssertion_Cached).
func (s *Signer) Assertion(c Claims) (string, error) {
	if s.max < 0 {
		return s.Sign(c)
	}
	now := s.now()
	k := cacheKey{c.Audience, c.Subject, c.Client}
	s.mu.Lock()
	if e := s.cache[k]; e != nil && now.Before(e.until) && e.email == c.Email && slices.Equal(e.roles, c.Roles) {
		token := e.token
		s.mu.Unlock()
		return token, nil
	}
	s.mu.Unlock()

	token, err := s.sign(c, now)
	if err != nil {
		return "", err
	}
	// Reused until half its lifetime is left, counted from the exp it
	// carries (whole seconds, cut down), not from now.
	until := time.Unix(s.expiry(now), 0).Add(-s.ttl / 2)
	e := &entry{email: c.Email, roles: slices.Clone(c.Roles), token: token, until: until}
	s.mu.Lock()
	if len(s.cache) >= s.max {
		s.shrink(now)
	}
	s.cache[k] = e
	s.mu.Unlock()
	return token, nil
}

// shrink forgets stale entries, then arbitrary ones down to nine tenths,
// so that the sweep runs at most once per max/10 new entries.
func (s *Signer) shrink(now time.Time) {
	for k, e := range s.cache {
		if !now.Before(e.until) {
			delete(s.cache, k)
		}
	}
	for k := range s.cache {
		if len(s.cache) < s.max-s.max/10 {
			break
		}
		delete(s.cache, k)
	}
}

// expiry is the exp of an assertion signed at now.
func (s *Signer) expiry(now time.Time) int64 { return now.Add(s.ttl).Unix() }

// Sign signs a fresh assertion for c, bypassing the cache.
func (s *Signer) Sign(c Claims) (string, error) { return s.sign(c, s.now()) }

func (s *Signer) sign(c Claims, now time.Time) (string, error) {
	if c.Audience == "" || c.Subject == "" {
		return "", errors.New("assertion: audience and subject are required")
	}
	roles := c.Roles
	if roles == nil {
		roles = []string{}
	}
	body, err := json.Marshal(payload{
		Issuer: s.issuer, Subject: c.Subject, Audience: c.Audience, Email: c.Email, Roles: roles, Client: c.Client,
		IssuedAt: now.Unix(), Expiry: s.expiry(now),
	})
	if err != nil {
		return "", fmt.Errorf("assertion: claims: %w", err)
	}
	jws, err := s.signer.Sign(body)
	if err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// JWKS is the public key set as JSON: the current key, and the previous
// secret's during a rotation.
func (s *Signer) JWKS() []byte { return slices.Clone(s.jwks) }

// JWKSHandler serves the key set (GET /auth/jwks.json). Verifiers may
// cache it for five minutes; a rotated key has a new kid, which they
// refetch on first sight.
func (s *Signer) JWKSHandler() http.Handler {
	length := strconv.Itoa(len(s.jwks))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Content-Length", length)
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(s.jwks)
	})
}
