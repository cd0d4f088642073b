package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/client"
	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/client/rs"
	httphelper "github.com/zitadel/oidc/v3/pkg/http"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/gatehouse/gatehouse/internal/clientauth"
)

// ErrProviderUnavailable means the identity provider has not been reached
// yet (discovery pending) or does not answer now.
var ErrProviderUnavailable = errors.New("identity provider unavailable")

// ErrNoClientCredentials means a public client (no secret, no key) was
// asked to authenticate itself, as introspection requires.
var ErrNoClientCredentials = errors.New("introspection needs client credentials: set ZITADEL_KEY_FILE, ZITADEL_KEY or ZITADEL_CLIENT_SECRET")

// ProviderConfig is what the relying party needs to know.
type ProviderConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string // empty: public client, or Key
	// Key, when set, authenticates Gatehouse with private_key_jwt at the
	// token, introspection and revocation endpoints (not with ClientSecret).
	Key         *clientauth.Key
	CallbackURL string
	Scopes      []string
}

// Provider owns the relying party. Discovery needs the provider to be up,
// so the relying party is built in the background (Run) and requests that
// need it before then get ErrProviderUnavailable instead of a crash loop.
type Provider struct {
	cfg    ProviderConfig
	client *http.Client
	logger *slog.Logger

	rp         atomic.Pointer[rpState]
	jwks       *jwksLimiter
	clientAuth *clientauth.Transport // nil without a key
	probe      healthCache
}

type rpState struct {
	rp            oidcrp.RelyingParty
	endSession    string
	discovery     string
	introspection rs.ResourceServer // nil for a public client
}

// NewProvider prepares a provider; call Run to connect. client carries the
// timeouts and tracing transport for every call to the provider.
func NewProvider(cfg ProviderConfig, client *http.Client, logger *slog.Logger) *Provider {
	lim := &jwksLimiter{next: transportOf(client), limit: rate.NewLimiter(rate.Every(5*time.Second), 1)}
	c := *client
	c.Transport = lim
	if cfg.Key != nil {
		cfg.ClientSecret = "" // one authentication method per request (RFC 6749 §2.3): the key
	}
	p := &Provider{cfg: cfg, client: &c, logger: logger, jwks: lim}
	if cfg.Key != nil {
		p.clientAuth = clientauth.NewTransport(lim, cfg.Key, cfg.Issuer)
		c.Transport = p.clientAuth
	}
	return p
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// Run connects to the provider, retrying with capped exponential backoff
// and jitter until it succeeds or ctx ends.
func (p *Provider) Run(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.Connect(ctx)
		if err == nil {
			p.logger.InfoContext(ctx, "identity provider ready", "issuer", p.cfg.Issuer, "attempts", attempt)
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		p.logger.WarnContext(ctx, "identity provider not reachable yet; retrying", "issuer", p.cfg.Issuer,
			"attempt", attempt, "retry_in", wait.String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// Connect runs discovery and loads the signing keys once.
func (p *Provider) Connect(ctx context.Context) error {
	if p.rp.Load() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, connectFetch{}, true)
	authStyle := oauth2.AuthStyleInHeader // client_secret_basic
	if p.cfg.ClientSecret == "" {
		// Public client: client_id in the body, PKCE proves the rest. With
		// a key, p.clientAuth adds the client assertion to that body.
		authStyle = oauth2.AuthStyleInParams
	}
	// Discover first on our own: the relying party hides the jwks_uri, and
	// readiness means the keys were reachable too.
	disc, err := client.Discover(ctx, p.cfg.Issuer, p.client)
	if err != nil {
		return fmt.Errorf("discovery at %s: %w", p.cfg.Issuer, err)
	}
	keysURL := disc.JwksURI
	p.jwks.url.Store(&keysURL)
	if p.clientAuth != nil {
		p.clientAuth.Authenticate(disc.TokenEndpoint, disc.IntrospectionEndpoint, disc.RevocationEndpoint)
	}
	if err := p.fetchKeys(ctx, keysURL); err != nil {
		return err
	}
	relyingParty, err := oidcrp.NewRelyingPartyOIDC(ctx, p.cfg.Issuer, p.cfg.ClientID, p.cfg.ClientSecret,
		p.cfg.CallbackURL, p.cfg.Scopes,
		oidcrp.WithHTTPClient(p.client),
		oidcrp.WithAuthStyle(authStyle),
		oidcrp.WithVerifierOpts(oidcrp.WithNonce(nonceFromContext), oidcrp.WithSupportedSigningAlgorithms(signingAlgs...)),
	)
	if err != nil {
		return fmt.Errorf("discovery at %s: %w", p.cfg.Issuer, err)
	}
	if err := loadKeySet(ctx, relyingParty.IDTokenVerifier().KeySet); err != nil {
		return err
	}
	p.rp.Store(&rpState{
		rp:            relyingParty,
		endSession:    disc.EndSessionEndpoint,
		discovery:     strings.TrimSuffix(p.cfg.Issuer, "/") + oidc.DiscoveryEndpoint,
		introspection: p.resourceServer(disc),
	})
	return nil
}

// resourceServer is the introspection client, authenticated like every
// other call: the key (p.clientAuth adds the assertion), or the secret
// (client_secret_basic). A public client cannot introspect: nil.
func (p *Provider) resourceServer(disc *oidc.DiscoveryConfiguration) rs.ResourceServer {
	var auth func() (any, error)
	switch {
	case p.cfg.Key != nil:
		auth = func() (any, error) { return nil, nil }
	case p.cfg.ClientSecret != "":
		basic := httphelper.AuthorizeBasic(p.cfg.ClientID, p.cfg.ClientSecret)
		auth = func() (any, error) { return basic, nil }
	default:
		return nil
	}
	return &resourceServer{introspect: disc.IntrospectionEndpoint, token: disc.TokenEndpoint, client: p.client, auth: auth}
}

// resourceServer implements zitadel/oidc's rs.ResourceServer over the
// discovery document Connect already has (rs's constructors discover
// again, and sign hour-long assertions of their own).
type resourceServer struct {
	introspect, token string
	client            *http.Client
	auth              func() (any, error)
}

func (r *resourceServer) IntrospectionURL() string { return r.introspect }
func (r *resourceServer) TokenEndpoint() string    { return r.token }
func (r *resourceServer) HttpClient() *http.Client { return r.client }
func (r *resourceServer) AuthFn() (any, error)     { return r.auth() }

// KeySet is the provider's signing-key set the relying party verifies ID
// tokens with: one cache of keys for every verifier, refetched when a
// token names an unknown key, at most as often as the key-set rate limit
// allows. ErrProviderUnavailable before discovery.
func (p *Provider) KeySet() (oidc.KeySet, error) {
	s := p.rp.Load()
	if s == nil {
		return nil, ErrProviderUnavailable
	}
	return s.rp.IDTokenVerifier().KeySet, nil
}

// Introspector is the RFC 7662 introspection client, authenticated with
// the key or the secret; ErrProviderUnavailable before discovery, and
// ErrNoClientCredentials for a public client.
func (p *Provider) Introspector() (rs.ResourceServer, error) {
	s := p.rp.Load()
	switch {
	case s == nil:
		return nil, ErrProviderUnavailable
	case s.introspection == nil:
		return nil, ErrNoClientCredentials
	}
	return s.introspection, nil
}

// signingAlgs are the ID token signatures accepted: asymmetric only, named
// here rather than taken from discovery, so neither "none" nor an HMAC
// keyed with a public key (alg confusion) can ever verify, whatever the
// provider's discovery document advertises.
var signingAlgs = []string{
	string(jose.RS256), string(jose.RS384), string(jose.RS512),
	string(jose.PS256), string(jose.PS384), string(jose.PS512),
	string(jose.ES256), string(jose.ES384), string(jose.ES512), string(jose.EdDSA),
}

// RP returns the relying party, or ErrProviderUnavailable before discovery
// (or without a provider at all).
func (p *Provider) RP() (oidcrp.RelyingParty, error) {
	if p == nil {
		return nil, ErrProviderUnavailable
	}
	s := p.rp.Load()
	if s == nil {
		return nil, ErrProviderUnavailable
	}
	return s.rp, nil
}

// Ready reports whether discovery and the signing keys have been loaded.
// It does not flip back when the provider goes away later: taking every
// replica out of the Service for an IdP blip would turn it into an outage.
func (p *Provider) Ready() bool { return p.rp.Load() != nil }

// EndSessionEndpoint is the discovery document's end_session_endpoint.
func (p *Provider) EndSessionEndpoint() string {
	if s := p.rp.Load(); s != nil {
		return s.endSession
	}
	return ""
}

// Available answers whether the provider is reachable now, from a probe of
// its discovery document cached for a second or two. Sign-in checks it so a
// user gets a friendly "try again" page instead of a browser error at an
// unreachable provider.
func (p *Provider) Available(ctx context.Context) error {
	s := p.rp.Load()
	if s == nil {
		return ErrProviderUnavailable
	}
	return p.probe.check(ctx, func(ctx context.Context) error {
		// The answer is cached for every caller, so it must judge the
		// provider, not this caller: a client that hung up must not make
		// the provider "unavailable" for everyone. Its trace is kept.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.discovery, nil)
		if err != nil {
			return err
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%w: discovery answered %d", ErrProviderUnavailable, resp.StatusCode)
		}
		return nil
	})
}

func (p *Provider) fetchKeys(ctx context.Context, keysURL string) error {
	if keysURL == "" {
		return errors.New("discovery document has no jwks_uri")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, keysURL, nil)
	if err != nil {
		return fmt.Errorf("keys request: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch signing keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch signing keys: %s answered %d", keysURL, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("decode signing keys: %w", err)
	}
	if len(set.Keys) == 0 {
		return errors.New("provider publishes no signing keys")
	}
	return nil
}

// loadKeySet fills the relying party's key set, which every verifier
// shares, before the first token needs it: it loads itself only when a
// signature names a key it does not have, and that first load would
// otherwise spend the key-set rate limit's one refetch, so a key rotated
// in the following seconds could not be looked up. The signature here
// names a key no provider has and is no signature at all: once the keys
// are loaded, the answer is that no key (or no single one, if the
// provider's keys name no kid) matches, or that it does not verify.
func loadKeySet(ctx context.Context, keys oidc.KeySet) error {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"gatehouse-key-set-loader"}`))
	jws, err := jose.ParseSignedCompact(header+".e30.AA", []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	_, err = keys.VerifySignature(ctx, jws)
	switch {
	case errors.Is(err, oidc.ErrKeyNone), errors.Is(err, oidc.ErrKeyMultiple), errors.Is(err, jose.ErrCryptoFailure):
		return nil
	case err == nil:
		return errors.New("load signing keys: a made-up signature verified")
	}
	return fmt.Errorf("load signing keys: %w", err)
}

// jwksLimiter rate-limits requests to the provider's key set: the relying
// party refetches keys whenever a token names an unknown kid (that is how a
// rotated key is picked up without restart), and a flood of forged tokens
// must not turn into a flood of requests to the provider: at most one
// refetch per 5 s. Connect's own loads are not a token's doing and do not
// count.
type jwksLimiter struct {
	next  http.RoundTripper
	limit *rate.Limiter
	url   atomic.Pointer[string]
}

// connectFetch marks the context of Connect's requests.
type connectFetch struct{}

func (j *jwksLimiter) RoundTrip(req *http.Request) (*http.Response, error) {
	if u := j.url.Load(); u != nil && *u != "" && req.URL.String() == *u &&
		req.Context().Value(connectFetch{}) == nil && !j.limit.Allow() {
		return nil, errors.New("signing-key refetch rate-limited")
	}
	return j.next.RoundTrip(req)
}

// healthCache remembers the last availability probe for a few seconds and
// lets one caller probe at a time.
type healthCache struct {
	mu      sync.Mutex
	checked time.Time
	err     error
}

func (h *healthCache) check(ctx context.Context, probe func(context.Context) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	ttl := 2 * time.Second
	if h.err != nil {
		ttl = time.Second // recover quickly once the provider is back
	}
	if !h.checked.IsZero() && time.Since(h.checked) < ttl {
		return h.err
	}
	h.err = probe(ctx)
	h.checked = time.Now()
	return h.err
}
