package clientauth

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// maxFormBody bounds the request body Transport reads to add the
// assertion: token, refresh and introspection requests are a few KB.
const maxFormBody = 1 << 20

// Transport authenticates Gatehouse at the provider's endpoints that
// need client authentication (token, introspection, revocation): it adds
// client_assertion_type and a freshly signed client_assertion to each
// form POST to one of them, and removes an (empty) client_secret, since
// RFC 6749 §2.3 allows one authentication method per request.
//
// It sits in the provider's HTTP client, below the OpenID library, so the
// code exchange (golang.org/x/oauth2), refresh and introspection
// (zitadel/oidc) all authenticate the same way without being told how, and
// every request gets its own short-lived assertion with a fresh jti.
// Requests to other URLs (discovery, keys, userinfo) and requests that
// already authenticate (an Authorization header, a client_assertion) pass
// through untouched.
type Transport struct {
	next      http.RoundTripper
	key       *Key
	audience  string
	endpoints atomic.Pointer[[]string]
}

// NewTransport returns a Transport that signs assertions with key for
// audience (the issuer) and sends requests through next (nil: the default
// transport). It authenticates nothing until Authenticate names the
// endpoints, which come from discovery.
func NewTransport(next http.RoundTripper, key *Key, audience string) *Transport {
	if next == nil {
		next = http.DefaultTransport
	}
	return &Transport{next: next, key: key, audience: audience}
}

// Authenticate sets the endpoint URLs (from the discovery document) whose
// requests get an assertion; empty strings are ignored.
func (t *Transport) Authenticate(endpoints ...string) {
	var list []string
	for _, e := range endpoints {
		if e != "" {
			list = append(list, strings.TrimSuffix(e, "?"))
		}
	}
	t.endpoints.Store(&list)
}

func (t *Transport) covers(u *url.URL) bool {
	list := t.endpoints.Load()
	if list == nil {
		return false
	}
	target := u.Scheme + "://" + u.Host + u.EscapedPath()
	for _, e := range *list {
		if e == target {
			return true
		}
	}
	return false
}

// RoundTrip implements http.RoundTripper. It never modifies req: a request
// that gets an assertion is sent as a clone with a new body.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody ||
		req.Header.Get("Authorization") != "" || !isForm(req.Header.Get("Content-Type")) || !t.covers(req.URL) {
		return t.next.RoundTrip(req)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxFormBody+1))
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("client authentication: read request body: %w", err)
	}
	if len(body) > maxFormBody {
		return nil, errors.New("client authentication: request body too large")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("client authentication: request body is not a form: %w", err)
	}
	if form.Get("client_assertion") == "" {
		assertion, err := t.key.Assertion(t.audience)
		if err != nil {
			return nil, fmt.Errorf("client authentication: %w", err)
		}
		form.Del("client_secret")
		form.Set("client_assertion_type", oidc.ClientAssertionTypeJWTAssertion)
		form.Set("client_assertion", assertion)
		body = []byte(form.Encode())
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(strings.NewReader(string(body)))
	out.ContentLength = int64(len(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(body))), nil }
	return t.next.RoundTrip(out)
}

func isForm(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-www-form-urlencoded"
}
