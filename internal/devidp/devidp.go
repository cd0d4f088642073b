// Package devidp is an OpenID provider for development and tests, built on
// zitadel/oidc's op package (the library ZITADEL itself serves OIDC with) and
// its example storage, with ZITADEL's claim shapes (project roles,
// resource owner, metadata), demo users, rotatable signing keys, a
// configurable access-token lifetime and post-logout redirect URIs.
//
// It is never started implicitly: only the -dev flag and tests use it.
package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// ZITADEL's claim names.
const (
	ClaimRoles          = "urn:zitadel:iam:org:project:roles"
	ClaimOwnerID        = "urn:zitadel:iam:user:resourceowner:id"
	ClaimOwnerName      = "urn:zitadel:iam:user:resourceowner:name"
	ClaimOwnerDomain    = "urn:zitadel:iam:user:resourceowner:primary_domain"
	ClaimMetadata       = "urn:zitadel:iam:user:metadata"
	ScopeRoles          = "urn:zitadel:iam:org:projects:roles"
	ScopeMetadata       = "urn:zitadel:iam:user:metadata"
	ScopeResourceOwner  = "urn:zitadel:iam:user:resourceowner"
	DemoOrgID           = "100000000000000001"
	DemoOrgName         = "Gatehouse Demo"
	DemoOrgDomain       = "demo.gatehouse.localhost"
	DemoProjectID       = "200000000000000001"
	DemoPassword        = "gatehouse-demo"
	projectRolesPattern = "urn:zitadel:iam:org:project:%s:roles"
)

// User is a demo account.
type User struct {
	ID, Username, Password, FirstName, LastName, Email string
	Roles                                              []string
	Metadata                                           map[string]string
	// OtherProjectRoles are roles granted in projects other than the demo
	// project (project ID → roles): ZITADEL puts each in its own
	// urn:zitadel:iam:org:project:<id>:roles claim.
	OtherProjectRoles map[string][]string
}

// DemoUsers are the accounts the development provider offers: alice has
// the admin role, bob does not.
func DemoUsers() []User {
	return []User{
		{ID: "300000000000000001", Username: "alice", Password: DemoPassword, FirstName: "Alice", LastName: "Admin",
			Email: "alice@" + DemoOrgDomain, Roles: []string{"admin", "viewer"}, Metadata: map[string]string{"team": "platform"}},
		{ID: "300000000000000002", Username: "bob", Password: DemoPassword, FirstName: "Bob", LastName: "Viewer",
			Email: "bob@" + DemoOrgDomain, Roles: []string{"viewer"}, Metadata: map[string]string{"team": "support"}},
	}
}

// Client is a registered application.
type Client struct {
	ID     string
	Secret string // empty: public client (PKCE, no client authentication)
	// RedirectURIs and PostLogoutRedirectURIs must match exactly.
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI receives logout tokens (OpenID Connect
	// Back-Channel Logout 1.0) from BackchannelLogout; empty: none.
	BackchannelLogoutURI string
	// KeyID and PublicKey register an application key (NewApplicationKey):
	// the client then authenticates with private_key_jwt and nothing
	// else, like a ZITADEL application with the authentication method "JWT".
	KeyID     string
	PublicKey *rsa.PublicKey
	// JWTAccessTokens makes the provider issue JWT access tokens to this
	// client instead of opaque ones (ZITADEL's per-application access
	// token type).
	JWTAccessTokens bool
	// Project is the ZITADEL project the client belongs to (default
	// DemoProjectID, where the demo users' roles are granted). As in
	// ZITADEL, an access token issued to one client of a project is
	// active at introspection for every client of that project.
	Project string
	// EchoNonceOnRefresh puts the original authentication's nonce into
	// refreshed ID tokens, as panva's oidc-provider does (OpenID Connect
	// Core 12.2 with the errata allows it); by default they carry none, as
	// ZITADEL's.
	EchoNonceOnRefresh bool
	// UngrantedScopes are scopes the provider silently leaves out of what
	// it grants this client when they are requested (a provider that
	// grants fewer scopes than asked for). A refresh that names one of them
	// is refused with invalid_scope.
	UngrantedScopes []string
	// RolesOnlyInUserinfo leaves the project roles out of ID tokens, as
	// ZITADEL does unless the application's "User roles inside ID Token"
	// setting is on: userinfo (and JWT access tokens) still carry them.
	RolesOnlyInUserinfo bool
}

func (c Client) project() string {
	if c.Project == "" {
		return DemoProjectID
	}
	return c.Project
}

// Options configure a Provider.
type Options struct {
	Issuer   string // e.g. http://127.0.0.1:3001 ; discovery reports it verbatim
	Clients  []Client
	Users    []User        // default DemoUsers()
	TokenTTL time.Duration // access-token lifetime; default 5 minutes
}

// Provider is a running development provider's state.
type Provider struct {
	issuer     string
	store      *store
	handler    http.Handler
	client     *http.Client // for back-channel logout calls
	assertions assertionLog
}

// New builds the provider. Serve Handler() at the root of Issuer.
func New(opts Options) (*Provider, error) {
	if opts.Issuer == "" {
		return nil, fmt.Errorf("devidp: issuer required")
	}
	users := opts.Users
	if users == nil {
		users = DemoUsers()
	}
	us := userStore{byID: map[string]*storage.User{}, byName: map[string]*storage.User{}, extra: map[string]User{}}
	for _, u := range users {
		su := &storage.User{
			ID: u.ID, Username: u.Username, Password: u.Password, FirstName: u.FirstName, LastName: u.LastName,
			Email: u.Email, EmailVerified: true, PreferredLanguage: language.English,
		}
		us.byID[u.ID], us.byName[u.Username], us.extra[u.ID] = su, su, u
	}
	clients := map[string]*storage.Client{}
	extras := map[string]Client{}
	for _, c := range opts.Clients {
		clients[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURIs...)
		extras[c.ID] = c
	}
	keys, err := newKeyring()
	if err != nil {
		return nil, err
	}
	ttl := opts.TokenTTL
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	st := &store{
		Storage: storage.NewStorageWithClients(us, clients),
		issuer:  opts.Issuer,
		users:   us,
		clients: extras,
		keys:    keys,
		ttl:     ttl,
		sids:    map[string]string{},
		nonces:  map[string]string{},
	}
	// A nil logger keeps the process-wide default logger untouched.
	h := exampleop.SetupServer(opts.Issuer, st, nil, false)
	p := &Provider{issuer: opts.Issuer, store: st, client: &http.Client{Timeout: 5 * time.Second},
		assertions: assertionLog{seen: map[string]time.Time{}}}
	p.handler = p.checkAssertions(h)
	return p, nil
}

// Handler serves the provider (discovery, keys, authorize, login UI, token,
// userinfo, end_session).
func (p *Provider) Handler() http.Handler { return p.handler }

// Issuer is the issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// RotateKey makes a new signing key current; the old one stays in the key
// set so tokens it signed still verify.
func (p *Provider) RotateKey() error { return p.store.keys.rotate() }

// SigningKeyID is the current key's ID.
func (p *Provider) SigningKeyID() string { return p.store.keys.current().id }

// Listen opens a loopback listener and returns the http issuer URL for it.
func Listen(addr string) (net.Listener, string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, "http://" + l.Addr().String(), nil
}

// store adds ZITADEL's claims, rotating keys, token lifetime and
// post-logout URIs to the example storage.
type store struct {
	*storage.Storage
	issuer  string
	users   userStore
	clients map[string]Client
	keys    *keyring
	ttl     time.Duration

	// sids is each user's provider session ID (the ID token's sid). One
	// per user, like a single browser's session at ZITADEL: every sign-in
	// of the user shares it until the session ends.
	mu   sync.Mutex
	sids map[string]string
	// nonces is the original authentication's nonce of each live refresh
	// token, for clients with EchoNonceOnRefresh.
	nonces map[string]string
}

// sessionID returns subject's provider session ID, starting one if needed.
func (s *store) sessionID(subject string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sid, ok := s.sids[subject]
	if !ok {
		sid = randomID()
		s.sids[subject] = sid
	}
	return sid
}

// endSession forgets subject's provider session and returns its ID ("" if none).
func (s *store) endSession(subject string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sid := s.sids[subject]
	delete(s.sids, subject)
	return sid
}

// TerminateSession is end_session: the provider session ends with it.
func (s *store) TerminateSession(ctx context.Context, userID, clientID string) error {
	s.endSession(userID)
	return s.Storage.TerminateSession(ctx, userID, clientID)
}

func (s *store) SigningKey(context.Context) (op.SigningKey, error) { return s.keys.current(), nil }

func (s *store) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *store) KeySet(context.Context) ([]op.Key, error) { return s.keys.public(), nil }

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	extra := s.clients[id]
	method := c.AuthMethod()
	switch {
	case extra.PublicKey != nil:
		method = oidc.AuthMethodPrivateKeyJWT
	case extra.Secret == "":
		method = oidc.AuthMethodNone
	}
	tokenType := op.AccessTokenTypeBearer
	if extra.JWTAccessTokens {
		tokenType = op.AccessTokenTypeJWT
	}
	return client{Client: c, postLogout: extra.PostLogoutRedirectURIs, method: method, tokenType: tokenType,
		ungranted: extra.UngrantedScopes}, nil
}

// GetKeyByIDAndClientID finds the public key of a client's application
// key, for private_key_jwt: the assertion's kid must name it.
func (s *store) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, ok := s.clients[clientID]
	if !ok || c.PublicKey == nil {
		return s.Storage.GetKeyByIDAndClientID(ctx, keyID, clientID)
	}
	if keyID != c.KeyID {
		return nil, fmt.Errorf("client %s has no key %q", clientID, keyID)
	}
	return &jose.JSONWebKey{KeyID: keyID, Algorithm: string(jose.RS256), Use: "sig", Key: c.PublicKey}, nil
}

// GetPrivateClaimsFromScopes puts ZITADEL's claims (roles, organisation)
// into JWT access tokens, as ZITADEL does with "assert roles".
func (s *store) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil {
		return nil, err
	}
	info := &oidc.UserInfo{}
	s.zitadelClaims(info, userID, clientID, scopes)
	if len(info.Claims) > 0 && claims == nil {
		claims = map[string]any{}
	}
	for k, v := range info.Claims {
		claims[k] = v
	}
	return claims, nil
}

// SetIntrospectionFromToken answers introspection as ZITADEL does: a
// token is active for every client of the project it was issued in (the
// example storage knows only the one client it was issued to), and the
// answer carries iss, aud (the project's clients and the project ID) and
// ZITADEL's claims.
func (s *store) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	caller, ok := s.clients[clientID]
	if !ok {
		return fmt.Errorf("unknown client %s", clientID)
	}
	peers := s.projectClients(caller.project())
	err := errors.New("token is not valid for this project")
	for _, id := range peers {
		if err = s.Storage.SetIntrospectionFromToken(ctx, resp, tokenID, subject, id); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	resp.Issuer = s.issuer
	resp.Audience = append(peers, caller.project())
	info := &oidc.UserInfo{}
	s.zitadelClaims(info, subject, resp.ClientID, resp.Scope)
	if len(info.Claims) > 0 && resp.Claims == nil {
		resp.Claims = map[string]any{}
	}
	for k, v := range info.Claims {
		resp.Claims[k] = v
	}
	return nil
}

// projectClients lists the IDs of a project's clients, sorted.
func (s *store) projectClients(project string) []string {
	var ids []string
	for id, c := range s.clients {
		if c.project() == project {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (s *store) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, req)
	return id, s.cap(exp), err
}

func (s *store) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	if r, ok := req.(refreshWithNonce); ok {
		req = r.RefreshTokenRequest // the example storage knows its own type only
	}
	id, rt, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, current)
	if err == nil {
		s.mu.Lock()
		if current == "" {
			if ar, ok := req.(op.AuthRequest); ok && ar.GetNonce() != "" {
				s.nonces[rt] = ar.GetNonce()
			}
		} else if n, ok := s.nonces[current]; ok {
			delete(s.nonces, current)
			s.nonces[rt] = n
		}
		s.mu.Unlock()
	}
	return id, rt, s.cap(exp), err
}

// TokenRequestByRefreshToken hands the op package, for clients with
// EchoNonceOnRefresh, a request that also answers the original nonce: the
// op puts an AuthRequest's nonce into the ID token it creates.
func (s *store) TokenRequestByRefreshToken(ctx context.Context, refreshToken string) (op.RefreshTokenRequest, error) {
	r, err := s.Storage.TokenRequestByRefreshToken(ctx, refreshToken)
	if err != nil || !s.clients[r.GetClientID()].EchoNonceOnRefresh {
		return r, err
	}
	s.mu.Lock()
	n := s.nonces[refreshToken]
	s.mu.Unlock()
	if n == "" {
		return r, nil
	}
	return refreshWithNonce{RefreshTokenRequest: r, nonce: n}, nil
}

// refreshWithNonce is a refresh request that is also an op.AuthRequest
// carrying the original nonce (nothing else of an authorization request).
type refreshWithNonce struct {
	op.RefreshTokenRequest
	nonce string
}

func (r refreshWithNonce) GetID() string                         { return "" }
func (r refreshWithNonce) GetACR() string                        { return "" }
func (r refreshWithNonce) GetCodeChallenge() *oidc.CodeChallenge { return nil }
func (r refreshWithNonce) GetNonce() string                      { return r.nonce }
func (r refreshWithNonce) GetRedirectURI() string                { return "" }
func (r refreshWithNonce) GetResponseType() oidc.ResponseType    { return oidc.ResponseTypeCode }
func (r refreshWithNonce) GetResponseMode() oidc.ResponseMode    { return "" }
func (r refreshWithNonce) GetState() string                      { return "" }
func (r refreshWithNonce) Done() bool                            { return true }

// SetRoles replaces a user's roles in the demo project, as an
// administrator changing grants in ZITADEL: tokens and userinfo issued
// from then on say so.
func (p *Provider) SetRoles(userID string, roles []string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	u := p.store.users.extra[userID]
	u.Roles = roles
	p.store.users.extra[userID] = u
}

// RevokeTokens ends every access and refresh token of the user, as ZITADEL
// does when an administrator ends the user's sessions: a refresh with one
// of them is refused with invalid_grant.
func (p *Provider) RevokeTokens(ctx context.Context, userID string) error {
	for id := range p.store.clients {
		if err := p.store.Storage.TerminateSession(ctx, userID, id); err != nil {
			return err
		}
	}
	return nil
}

// cap shortens the lifetime the token response announces, so tests can see
// a real expiry (expires_in) without waiting five minutes.
func (s *store) cap(exp time.Time) time.Time {
	if limit := time.Now().Add(s.ttl); exp.After(limit) {
		return limit
	}
	return exp
}

// SetUserinfoFromRequest fills the ID token. As in ZITADEL, when an access
// token is issued the op package leaves profile and e-mail out of the ID
// token (they come from userinfo); roles and the organisation stay.
func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, token, scopes); err != nil {
		return err
	}
	s.zitadelClaims(info, token.GetSubject(), token.GetClientID(), scopes)
	if s.clients[token.GetClientID()].RolesOnlyInUserinfo {
		for k := range info.Claims {
			if strings.HasPrefix(k, "urn:zitadel:iam:org:project:") && strings.HasSuffix(k, ":roles") {
				delete(info.Claims, k)
			}
		}
	}
	// Only ID tokens come through here: sid is for back-channel logout.
	info.AppendClaims("sid", s.sessionID(token.GetSubject()))
	return nil
}

func (s *store) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	s.zitadelClaims(info, info.Subject, "", nil)
	return nil
}

// zitadelClaims adds claims in ZITADEL's shapes for a token of clientID
// ("": of the demo project); scopes nil means all. The demo users' roles
// are granted in the demo project only.
func (s *store) zitadelClaims(info *oidc.UserInfo, userID, clientID string, scopes []string) {
	s.mu.Lock()
	u, ok := s.users.extra[userID]
	s.mu.Unlock()
	if !ok {
		return
	}
	inDemoProject := clientID == "" || s.clients[clientID].project() == DemoProjectID
	has := func(scope string) bool {
		if scopes == nil {
			return true
		}
		for _, sc := range scopes {
			if sc == scope {
				return true
			}
		}
		return false
	}
	if has(ScopeRoles) && len(u.Roles) > 0 && inDemoProject {
		roles := map[string]any{}
		for _, r := range u.Roles {
			roles[r] = map[string]any{DemoOrgID: DemoOrgDomain}
		}
		info.AppendClaims(ClaimRoles, roles)
		info.AppendClaims(fmt.Sprintf(projectRolesPattern, DemoProjectID), roles)
	}
	if has(ScopeRoles) {
		for project, rs := range u.OtherProjectRoles {
			roles := map[string]any{}
			for _, r := range rs {
				roles[r] = map[string]any{DemoOrgID: DemoOrgDomain}
			}
			info.AppendClaims(fmt.Sprintf(projectRolesPattern, project), roles)
		}
	}
	if has(ScopeResourceOwner) {
		info.AppendClaims(ClaimOwnerID, DemoOrgID)
		info.AppendClaims(ClaimOwnerName, DemoOrgName)
		info.AppendClaims(ClaimOwnerDomain, DemoOrgDomain)
	}
	if has(ScopeMetadata) && len(u.Metadata) > 0 {
		md := map[string]string{}
		for k, v := range u.Metadata {
			md[k] = base64.StdEncoding.EncodeToString([]byte(v))
		}
		info.AppendClaims(ClaimMetadata, md)
	}
}

// client lets ZITADEL's scopes through and adds what the example client lacks.
type client struct {
	op.Client
	postLogout []string
	method     oidc.AuthMethod
	tokenType  op.AccessTokenType
	ungranted  []string
}

func (c client) PostLogoutRedirectURIs() []string    { return c.postLogout }
func (c client) AuthMethod() oidc.AuthMethod         { return c.method }
func (c client) AccessTokenType() op.AccessTokenType { return c.tokenType }
func (c client) IsScopeAllowed(scope string) bool {
	if slices.Contains(c.ungranted, scope) {
		return false // the op drops it from the grant
	}
	return strings.HasPrefix(scope, "urn:zitadel:iam:") || c.Client.IsScopeAllowed(scope)
}

type userStore struct {
	byID, byName map[string]*storage.User
	extra        map[string]User
}

func (u userStore) GetUserByID(id string) *storage.User         { return u.byID[id] }
func (u userStore) GetUserByUsername(name string) *storage.User { return u.byName[name] }
func (u userStore) ExampleClientID() string                     { return "service" }

// keyring holds the signing keys, newest first.
type keyring struct {
	mu   sync.Mutex
	keys []*signingKey
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

func newKeyring() (*keyring, error) {
	k := &keyring{}
	return k, k.rotate()
}

func (k *keyring) rotate() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	var id [9]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("key id: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append([]*signingKey{{id: base64.RawURLEncoding.EncodeToString(id[:]), key: key}}, k.keys...)
	if len(k.keys) > 3 {
		k.keys = k.keys[:3]
	}
	return nil
}

func (k *keyring) current() *signingKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys[0]
}

func (k *keyring) public() []op.Key {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]op.Key, len(k.keys))
	for i, key := range k.keys {
		out[i] = publicKey{key}
	}
	return out
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("devidp: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}
