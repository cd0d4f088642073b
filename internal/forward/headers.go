package forward

import (
	"net/http"
	"strings"
)

// The identity headers a 200 carries for the proxy to copy upstream. The
// responder writes every one of them on every 200, empty when there is
// nothing to say, so that a proxy copying them replaces (or, with an
// empty value, removes) whatever the client sent under the same name:
//   - nginx: auth_request_set $v $upstream_http_x_auth_request_user;
//     proxy_set_header X-Auth-Request-User $v; (an empty value drops it)
//   - ingress-nginx: the auth-response-headers annotation (the same
//     directives, generated)
//   - Traefik: ForwardAuth authResponseHeaders (deletes the client's copy,
//     then copies the answer's)
//   - Caddy: forward_auth copy_headers (deletes the client's copy, sets it
//     when the answer's value is not empty)
//   - Envoy: ext_authz authorization_response.allowed_upstream_headers,
//     Envoy Gateway headersToBackend (the answer's value overrides)
//
// Every header the proxy does NOT copy reaches the upstream as the client
// sent it: list all of them in the proxy configuration (IdentityHeaders).
const (
	HeaderUser              = "X-Auth-Request-User"               // sub
	HeaderEmail             = "X-Auth-Request-Email"              // email
	HeaderPreferredUsername = "X-Auth-Request-Preferred-Username" // preferred_username
	HeaderGroups            = "X-Auth-Request-Groups"             // project roles, comma-separated
	HeaderAccessToken       = "X-Auth-Request-Access-Token"       // only with FORWARD_ACCESS_TOKEN=true
	HeaderAssertion         = "X-Gatehouse-Assertion"             // signed JWT (internal/assertion)
)

// IdentityHeaders are all headers WriteIdentity owns, in a fixed order.
var IdentityHeaders = [...]string{HeaderUser, HeaderEmail, HeaderPreferredUsername, HeaderGroups, HeaderAccessToken, HeaderAssertion}

// Identity is who the upstream is told is calling.
type Identity struct {
	Subject           string
	Email             string
	PreferredUsername string
	Roles             []string // project role names, sorted
	AccessToken       string
}

// WriteIdentity sets every identity header on h: the identity's values,
// the assertion (empty: none), and the access token only when
// forwardAccessToken (FORWARD_ACCESS_TOKEN=true). A value that could not
// travel in a header (a control character) is written empty rather than
// mangled; role names that would break the comma-separated list are left
// out of it. The assertion is a compact JWS that Gatehouse signed
// (base64url and dots) and is written as is: scanning its bytes would be
// the largest cost here (BenchmarkChain_VerifyBearer). It allocates once,
// plus once to join two or more roles.
func WriteIdentity(h http.Header, id Identity, assertion string, forwardAccessToken bool) {
	token := ""
	if forwardAccessToken {
		token = id.AccessToken
	}
	vals := make([]string, len(IdentityHeaders))
	vals[0] = clean(id.Subject)
	vals[1] = clean(id.Email)
	vals[2] = clean(id.PreferredUsername)
	vals[3] = groups(id.Roles)
	vals[4] = clean(token)
	vals[5] = assertion
	for i, k := range IdentityHeaders {
		h[k] = vals[i : i+1 : i+1]
	}
}

// ClearIdentity sets every identity header empty: for answers other than
// 200 that a proxy might still copy from (none of the documented ones do,
// but an empty header is cheaper than an argument).
func ClearIdentity(h http.Header) {
	WriteIdentity(h, Identity{}, "", false)
}

func clean(v string) string {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f {
			return ""
		}
	}
	return v
}

func groups(roles []string) string {
	n, total := 0, 0
	for _, r := range roles {
		if groupName(r) {
			n++
			total += len(r) + 1
		}
	}
	switch n {
	case 0:
		return ""
	case 1:
		for _, r := range roles {
			if groupName(r) {
				return r
			}
		}
	}
	var b strings.Builder
	b.Grow(total)
	for _, r := range roles {
		if !groupName(r) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r)
	}
	return b.String()
}

// groupName: a role name that survives a comma-separated header list.
func groupName(r string) bool {
	if r == "" {
		return false
	}
	for i := 0; i < len(r); i++ {
		if c := r[i]; c <= ' ' || c == ',' || c == 0x7f {
			return false
		}
	}
	return true
}
