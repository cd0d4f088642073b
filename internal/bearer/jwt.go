package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse/gatehouse/internal/claims"
)

// signingAlgs are the signatures accepted: asymmetric only, named here
// rather than taken from the token or discovery, so neither "none" nor an
// HMAC keyed with a public key (algorithm confusion) ever verifies.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// leeway tolerates the provider's clock running ahead of ours for a
// JWT's nbf and iat: a token issued a moment ago must not be refused as
// "not yet valid". exp gets none: an expired token is refused at once.
const leeway = 10 * time.Second

// jwtCacheTTL bounds how long a verified JWT access token is remembered
// (never past its exp). A JWT cannot be revoked, so the only thing a
// longer cache would delay is the withdrawal of a signing key.
// BenchmarkDecision_HTTP (CPU per request, 2 cores): uncached JWT 90–92 µs = 0.36× bare net/http (32–34 µs), RS256 most of it (BenchmarkVerify_JWT_Uncached 45–55 µs, 152 allocs); cached 0.88–0.99×, 0.9 µs, 0 allocs.
const jwtCacheTTL = time.Minute

// tokenClaims are the members of a JWT access token or an introspection
// answer that Gatehouse reads.
type tokenClaims struct {
	Active          bool                     `json:"active"` // introspection only
	Issuer          string                   `json:"iss"`
	Subject         string                   `json:"sub"`
	Audience        oidc.Audience            `json:"aud"`
	Expiry          float64                  `json:"exp"`
	NotBefore       float64                  `json:"nbf"`
	IssuedAt        float64                  `json:"iat"`
	ClientID        string                   `json:"client_id"`
	AuthorizedParty string                   `json:"azp"`
	Scope           oidc.SpaceDelimitedArray `json:"scope"`
	Username        string                   `json:"username"` // introspection's name for preferred_username
	Name            string                   `json:"name"`
	Nonce           string                   `json:"nonce"`   // ID tokens only
	AccessTokenHash string                   `json:"at_hash"` // ID tokens only
}

// decodeClaims reads a JSON object of claims: the members Gatehouse
// checks, and all of them for the identity (claims.IdentityOf, the
// function that reads a session's). Claims of an unexpected shape (roles
// that are not ZITADEL's object map) are ignored rather than failing the
// token. Decoding twice costs a few µs beside a signature check or an
// introspection round trip, and only on a token's first use.
func decodeClaims(payload []byte) (*tokenClaims, map[string]any, error) {
	var c tokenClaims
	var all map[string]any
	if json.Unmarshal(payload, &c) != nil || json.Unmarshal(payload, &all) != nil {
		return nil, nil, errors.New("claims are not a JSON object of the expected types")
	}
	return &c, all, nil
}

// check applies the rules of a JWT (jwt) or an active introspection
// answer: issuer (when the answer names one; a JWT must), audience,
// subject, exp, and for a JWT nbf and iat. An introspection answer's
// active is the provider's word that the token is valid now (RFC 7662
// §2.2): judging its nbf and iat by our clock would refuse every fresh
// token while that clock runs behind the provider's. Its exp is still
// checked: it bounds how long the answer is cached.
func (v *Verifier) check(c *tokenClaims, now time.Time, jwt bool) (Reason, error) {
	switch {
	case c.Issuer != v.cfg.Issuer && (jwt || c.Issuer != ""):
		return ReasonWrongIssuer, errors.New("issuer is not the configured provider")
	case (jwt || len(c.Audience) > 0) && !v.audienceOK(c.Audience):
		return ReasonWrongAudience, errors.New("audience names neither the client nor the project")
	case c.Subject == "":
		return ReasonMissingClaim, errors.New("no sub claim")
	case jwt && c.Expiry == 0:
		return ReasonMissingClaim, errors.New("no exp claim")
	case c.Expiry != 0 && !now.Before(unix(c.Expiry)):
		return ReasonExpired, errors.New("token expired")
	case jwt && c.NotBefore != 0 && now.Add(leeway).Before(unix(c.NotBefore)):
		return ReasonNotYetValid, errors.New("token not valid yet (nbf)")
	case jwt && c.IssuedAt != 0 && now.Add(leeway).Before(unix(c.IssuedAt)):
		return ReasonNotYetValid, errors.New("token issued in the future (iat)")
	}
	return "", nil
}

func (v *Verifier) audienceOK(aud []string) bool {
	for _, want := range v.cfg.Audiences {
		if slices.Contains(aud, want) {
			return true
		}
	}
	return false
}

func unix(seconds float64) time.Time {
	sec, frac := math.Modf(seconds)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// identity builds the Identity a valid token speaks for.
func (v *Verifier) identity(c *tokenClaims, all map[string]any) *Identity {
	id := &Identity{Identity: *claims.IdentityOf(c.Subject, all, v.cfg.ProjectID), Name: c.Name, ClientID: c.ClientID}
	v.roles.Share(&id.Identity)
	if id.PreferredUsername == "" {
		id.PreferredUsername = c.Username
	}
	if id.ClientID == "" {
		id.ClientID = c.AuthorizedParty
	}
	for _, s := range c.Scope {
		if s != "" {
			id.Scopes = append(id.Scopes, s)
		}
	}
	if c.Expiry != 0 {
		id.Expiry = unix(c.Expiry)
	}
	return id
}

// verifyJWT checks a JWT access token locally: algorithm, claims, then the
// signature against the provider's key set (cheap refusals first, so a
// flood of expired or foreign tokens costs no RSA work). key is the
// token's hashToken.
func (v *Verifier) verifyJWT(ctx context.Context, token string, key cacheKey) Result {
	now := v.now()
	if e, ok := v.cache.get(key, now); ok && !v.noJWTCache {
		return Result{Outcome: Allowed, Credential: CredentialJWT, Cached: true, Identity: e.identity}
	}
	if res, ok := wellFormed(CredentialJWT, token); !ok {
		return res
	}
	jws, err := jose.ParseSignedCompact(token, signingAlgs)
	if err != nil {
		var unexpected *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &unexpected) || errors.Is(err, jose.ErrUnsupportedAlgorithm) {
			return invalid(CredentialJWT, ReasonUnsupportedAlg, errors.New("signature algorithm not accepted"))
		}
		return invalid(CredentialJWT, ReasonMalformed, errors.New("not a compact JWS"))
	}
	if len(jws.Signatures) != 1 {
		return invalid(CredentialJWT, ReasonMalformed, errors.New("not exactly one signature"))
	}
	c, all, err := decodeClaims(jws.UnsafePayloadWithoutVerification())
	if err != nil {
		return invalid(CredentialJWT, ReasonMalformed, err)
	}
	if reason, err := v.check(c, now, true); reason != "" {
		return invalid(CredentialJWT, reason, err)
	}
	// An ID token is signed by the same key, for the same audience, in the
	// same "typ": JWT. It proves a login to the client, not a grant to
	// call an API; nonce and at_hash are claims only ID tokens carry. A
	// back-channel logout token is signed alike too, for the client, and
	// names the user who just signed out: its typ (logout+jwt) or its
	// events claim gives it away.
	if c.Nonce != "" || c.AccessTokenHash != "" {
		return invalid(CredentialJWT, ReasonNotAccessToken, errors.New("an ID token, not an access token"))
	}
	if !accessTokenType(jws.Signatures[0].Header) || all["events"] != nil {
		return invalid(CredentialJWT, ReasonNotAccessToken, errors.New("a JWT of another type (a logout token?), not an access token"))
	}
	keys, err := v.upstream.KeySet()
	if err != nil {
		return unavailable(CredentialJWT, errProviderDown)
	}
	if _, err := keys.VerifySignature(ctx, jws); err != nil {
		return v.signatureFailure(ctx, err)
	}
	id := v.identity(c, all)
	v.cache.put(key, entry{until: earliest(now.Add(jwtCacheTTL), id.Expiry), identity: id}, now)
	return Result{Outcome: Allowed, Credential: CredentialJWT, Identity: id}
}

// accessTokenType: the JOSE header's typ is absent or one an access token
// carries (JWT, RFC 9068's at+jwt, either with the application/ prefix;
// media types are case-insensitive).
func accessTokenType(h jose.Header) bool {
	typ, ok := h.ExtraHeaders[jose.HeaderType]
	if !ok {
		return true
	}
	s, ok := typ.(string)
	if !ok {
		return false
	}
	s = strings.TrimPrefix(strings.ToLower(s), "application/")
	return s == "jwt" || s == "at+jwt"
}

// signatureFailure tells a bad or foreign signature (401) from a key set
// that could not be fetched because the provider is down (503). A refetch
// refused by the key-set rate limit means the keys were fetched moments
// ago: the token's key is not among them, 401.
func (v *Verifier) signatureFailure(ctx context.Context, err error) Result {
	switch {
	case errors.Is(err, jose.ErrCryptoFailure):
		return invalid(CredentialJWT, ReasonBadSignature, errors.New("signature does not verify"))
	case errors.Is(err, oidc.ErrKeyNone), errors.Is(err, oidc.ErrKeyMultiple):
		return invalid(CredentialJWT, ReasonUnknownKey, errors.New("no published key matches the token's kid"))
	}
	if perr := v.upstream.Available(ctx); perr != nil {
		return unavailable(CredentialJWT, fmt.Errorf("signing keys: %w", errProviderDown))
	}
	return invalid(CredentialJWT, ReasonUnknownKey, errors.New("token's key not in the key set (refetch rate-limited)"))
}

func earliest(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}
