package conformance_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// clientID is the client the test provider knows (testenv's, so that
// testenv.Config works unchanged).
const clientID = "gatehouse-test"

// subject is the one user the provider signs in.
const subject = "conformance-user-1"

// signingKey is an RSA key with its key ID ("" for none).
type signingKey struct {
	id   string
	priv *rsa.PrivateKey
}

func newKey(t *testing.T, id string) *signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &signingKey{id: id, priv: k}
}

func (k *signingKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.id, Algorithm: string(jose.RS256), Use: "sig"}
}

// Behaviour tells the provider how to misbehave; nil hooks behave.
type Behaviour struct {
	// Discovery edits the discovery document.
	Discovery func(op *OP, doc map[string]any)
	// Redirect edits the authorization response's query.
	Redirect func(op *OP, q url.Values)
	// IDToken edits the ID token's JOSE header and claims before signing.
	IDToken func(op *OP, header, claims map[string]any)
	// SigningKey picks the key that signs (default: the current one).
	SigningKey func(op *OP) *signingKey
	// Sign turns the signing input into a signature (default: RS256 with the key).
	Sign func(op *OP, k *signingKey, input string) []byte
	// KeySet picks the published keys (default: every published key).
	KeySet func(op *OP) []jose.JSONWebKey
	// TokenResponse edits the token endpoint's JSON answer.
	TokenResponse func(op *OP, resp map[string]any)
	// Userinfo edits the userinfo answer.
	Userinfo func(op *OP, info map[string]any)
}

// OP is a small OpenID provider written for this suite, a deliberate
// fake: the real one (zitadel/oidc's op package, internal/devidp) cannot
// be told to forge signatures, lie in discovery or hand out another
// subject's userinfo, which is what the suite needs; every well-behaved
// flow is also tested against the real one (internal/server, interop
// with Hydra). It serves the Authorization Code flow with PKCE: discovery, JWKS, authorize (signs the user in at once and
// redirects back with a code), token, userinfo. It checks what a real
// provider checks (client, redirect URI, PKCE, single-use codes, bearer
// access tokens) so that the relying party under test must do its part.
type OP struct {
	URL         string
	RedirectURI string

	srv *httptest.Server

	mu        sync.Mutex
	behaviour Behaviour
	published []*signingKey
	current   *signingKey
	codes     map[string]grant
	tokens    map[string]bool
	// secrets are values that must never show up in a page, log or span.
	secrets []string
	// userinfoAuth are the Authorization headers userinfo received.
	userinfoAuth []string
	discoveries  int
	exchanges    int
}

type grant struct {
	nonce, challenge, redirectURI string
}

// StartOP serves a provider on loopback for a relying party whose
// callback is redirectURI.
func StartOP(t *testing.T, redirectURI string, b Behaviour) *OP {
	t.Helper()
	k := newKey(t, "key-1")
	op := &OP{
		RedirectURI: redirectURI, behaviour: b,
		published: []*signingKey{k}, current: k,
		codes: map[string]grant{}, tokens: map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", op.discovery)
	mux.HandleFunc("GET /keys", op.keys)
	mux.HandleFunc("GET /authorize", op.authorize)
	mux.HandleFunc("POST /token", op.token)
	mux.HandleFunc("GET /userinfo", op.userinfo)
	op.srv = httptest.NewServer(mux)
	op.URL = op.srv.URL
	t.Cleanup(op.srv.Close)
	return op
}

// Behave replaces the behaviour (e.g. back to nil hooks: a good provider).
func (op *OP) Behave(b Behaviour) {
	op.mu.Lock()
	op.behaviour = b
	op.mu.Unlock()
}

// Rotate makes a new key current; with retire, the old keys are no longer published.
func (op *OP) Rotate(t *testing.T, id string, retire bool) {
	k := newKey(t, id)
	op.mu.Lock()
	defer op.mu.Unlock()
	if retire {
		op.published = nil
	}
	op.published = append(op.published, k)
	op.current = k
}

// Secrets are the codes, tokens, nonces and states handed out so far.
func (op *OP) Secrets() []string {
	op.mu.Lock()
	defer op.mu.Unlock()
	return append([]string(nil), op.secrets...)
}

// UserinfoAuth are the Authorization headers the userinfo endpoint saw.
func (op *OP) UserinfoAuth() []string {
	op.mu.Lock()
	defer op.mu.Unlock()
	return append([]string(nil), op.userinfoAuth...)
}

// Discoveries counts discovery requests.
func (op *OP) Discoveries() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.discoveries
}

// Exchanges counts successful code exchanges.
func (op *OP) Exchanges() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.exchanges
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (op *OP) discovery(w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.discoveries++
	doc := map[string]any{
		"issuer":                                op.URL,
		"authorization_endpoint":                op.URL + "/authorize",
		"token_endpoint":                        op.URL + "/token",
		"userinfo_endpoint":                     op.URL + "/userinfo",
		"jwks_uri":                              op.URL + "/keys",
		"end_session_endpoint":                  op.URL + "/end_session",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"none", "client_secret_basic"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
	}
	if op.behaviour.Discovery != nil {
		op.behaviour.Discovery(op, doc)
	}
	writeJSON(w, http.StatusOK, doc)
}

func (op *OP) keys(w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	defer op.mu.Unlock()
	var set jose.JSONWebKeySet
	if op.behaviour.KeySet != nil {
		set.Keys = op.behaviour.KeySet(op)
	} else {
		for _, k := range op.published {
			set.Keys = append(set.Keys, k.jwk())
		}
	}
	writeJSON(w, http.StatusOK, set)
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (op *OP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != clientID || q.Get("redirect_uri") != op.RedirectURI || q.Get("response_type") != "code" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		http.Error(w, "invalid authorization request", http.StatusBadRequest)
		return
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	code := randomToken()
	op.codes[code] = grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri")}
	op.secrets = append(op.secrets, code, q.Get("state"))
	if n := q.Get("nonce"); n != "" {
		op.secrets = append(op.secrets, n)
	}
	back := url.Values{"code": {code}, "state": {q.Get("state")}}
	if op.behaviour.Redirect != nil {
		op.behaviour.Redirect(op, back)
	}
	http.Redirect(w, r, op.RedirectURI+"?"+back.Encode(), http.StatusSeeOther)
}

func (op *OP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	f := r.PostForm
	op.mu.Lock()
	defer op.mu.Unlock()
	g, ok := op.codes[f.Get("code")]
	delete(op.codes, f.Get("code")) // single use, whatever happens next
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	switch {
	case f.Get("grant_type") != "authorization_code", f.Get("client_id") != clientID:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client"})
		return
	case !ok, f.Get("redirect_uri") != g.redirectURI,
		base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	op.exchanges++
	accessToken := randomToken()
	op.tokens[accessToken] = true
	atHash := sha256.Sum256([]byte(accessToken))
	now := time.Now()
	header := map[string]any{"alg": "RS256", "typ": "JWT"}
	claims := map[string]any{
		"iss": op.URL, "sub": subject, "aud": []string{clientID},
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "auth_time": now.Unix(),
		"nonce": g.nonce, "at_hash": base64.RawURLEncoding.EncodeToString(atHash[:16]),
	}
	k := op.current
	if op.behaviour.SigningKey != nil {
		k = op.behaviour.SigningKey(op)
	}
	if k.id != "" {
		header["kid"] = k.id
	}
	if op.behaviour.IDToken != nil {
		op.behaviour.IDToken(op, header, claims)
	}
	idToken := op.sign(k, header, claims)
	op.secrets = append(op.secrets, accessToken, idToken)
	resp := map[string]any{"access_token": accessToken, "token_type": "Bearer", "expires_in": 300, "id_token": idToken}
	if op.behaviour.TokenResponse != nil {
		op.behaviour.TokenResponse(op, resp)
	}
	writeJSON(w, http.StatusOK, resp)
}

func b64JSON(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (op *OP) sign(k *signingKey, header, claims map[string]any) string {
	input := b64JSON(header) + "." + b64JSON(claims)
	var sig []byte
	if op.behaviour.Sign != nil {
		sig = op.behaviour.Sign(op, k, input)
	} else {
		sig = rs256(k, input)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func rs256(k *signingKey, input string) []byte {
	h := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.priv, crypto.SHA256, h[:])
	if err != nil {
		panic(err)
	}
	return sig
}

func hs256(secret []byte, input string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return m.Sum(nil)
}

func (op *OP) userinfo(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	op.mu.Lock()
	defer op.mu.Unlock()
	op.userinfoAuth = append(op.userinfoAuth, auth)
	scheme, token, _ := strings.Cut(auth, " ")
	if scheme != "Bearer" || !op.tokens[token] {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	info := map[string]any{"sub": subject, "name": "Conformance User", "email": "conformance@example.test", "email_verified": true}
	if op.behaviour.Userinfo != nil {
		op.behaviour.Userinfo(op, info)
	}
	writeJSON(w, http.StatusOK, info)
}
