package forward

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Rules are one route's requirements beyond being signed in:
//
//	roles=a,b   the user has at least one of these project roles
//	org=<id>    the user belongs to this ZITADEL organisation: it is the
//	            user's own (urn:zitadel:iam:user:resourceowner:id), and
//	            with roles, the role must be granted in that organisation
//	            (the org ID must be a key in the role's grant map)
//
// Rules come only from parts of the asking request that the operator
// writes and the client cannot reach (see RulesOf). The zero value
// requires nothing but a session.
type Rules struct {
	roles string // comma-separated, validated
	org   string
}

// Limits on rules: generous for any real route, small enough that a
// broken configuration is noticed rather than evaluated.
const (
	MaxRoles      = 16
	maxNameLength = 64
	maxRulesText  = 1024
)

// RuleError is a configuration error in a route's rules: the decision
// answers 500 and logs it, never an allow.
type RuleError struct {
	Text    string // the rules as received
	Problem string
}

func (e *RuleError) Error() string {
	if e.Text == "" {
		return "forward-auth rules: " + e.Problem
	}
	return fmt.Sprintf("forward-auth rules %q: %s", e.Text, e.Problem)
}

// ErrClientQuery: the query string on /auth/forward is the original
// request's own, which means the proxy passed the client's query
// through (Caddy does this when forward_auth's uri has no "?"): rules read
// from it would be the client's. Refused, so a client can neither add nor
// remove a rule; the fix is in the proxy's configuration.
var ErrClientQuery = &RuleError{Problem: "the query string is the original request's own: the proxy passed the client's query through (Caddy: write forward_auth's uri with a question mark, e.g. `uri /auth/forward?` or `uri /auth/forward?roles=admin`)"}

// RulesOf reads the route's rules for adapter a, from where only the
// operator writes:
//   - Verify, Forward: the query of the endpoint URL the proxy is
//     configured with (nginx's auth_request location, ingress-nginx's
//     auth-url, Traefik's address, Caddy's uri). nginx and Traefik never
//     add the client's query to it; Caddy does unless uri names a query,
//     which is detected (ErrClientQuery).
//   - Envoy: the matrix parameters of the endpoint's own path segment,
//     path_prefix "/auth/forward;roles=a,b;org=123". The client's path
//     and query are appended after it and always start with "/", so they
//     can never reach into that segment; the query is the client's and
//     is never read.
func RulesOf(r *http.Request, a Adapter, o Original) (Rules, error) {
	switch a {
	case Envoy:
		params, _, ok := splitEnvoy(r.RequestURI)
		if !ok {
			return Rules{}, &RuleError{Problem: "not an Envoy path_prefix request"} // the URI is the client's: not quoted
		}
		return ParseRules(params, ';')
	case Verify, Forward:
		q := r.URL.RawQuery
		// Only on /auth/forward, where Caddy points: nginx and
		// ingress-nginx never add the client's query to the auth
		// subrequest, so on /auth/verify a query equal to the page's is
		// the operator's rules, and a page whose query happens to be
		// "roles=admin" must not break.
		if q != "" && o.Known && a == Forward {
			if _, oq, ok := strings.Cut(o.URI, "?"); ok && oq == q {
				return Rules{}, ErrClientQuery
			}
		}
		return ParseRules(q, '&')
	}
	return Rules{}, &RuleError{Problem: "unknown endpoint"}
}

// ParseRules reads "roles=a,b<sep>org=id". Everything else is an error:
// unknown or repeated parameters, empty values or role names, characters
// outside letters, digits and "_.:-" (no percent-encoding), too many
// roles. It does not allocate unless the rules are wrong (hand-parsed, not
// url.ParseQuery: BenchmarkRules_ParseAndCheck, on every decision).
func ParseRules(s string, sep byte) (Rules, error) {
	var r Rules
	if s == "" {
		return r, nil
	}
	if len(s) > maxRulesText {
		return r, &RuleError{Problem: fmt.Sprintf("longer than %d characters", maxRulesText)}
	}
	seenRoles, seenOrg := false, false
	for rest := s; ; {
		pair, tail, more := cut(rest, sep)
		key, val, ok := strings.Cut(pair, "=")
		// The text up to this parameter: roles and org only, never what
		// follows it (quotedName says why).
		upTo := s[:len(s)-len(rest)+len(pair)]
		switch {
		case pair == "":
			return Rules{}, &RuleError{Text: upTo, Problem: "empty parameter (a stray separator?)"}
		case !ok:
			return Rules{}, &RuleError{Problem: fmt.Sprintf("%s has no value", quotedName(pair))}
		case key == "roles":
			if seenRoles {
				return Rules{}, &RuleError{Text: upTo, Problem: "roles given twice: list them once, comma-separated (any one suffices)"}
			}
			if err := checkRoles(val); err != "" {
				return Rules{}, &RuleError{Text: upTo, Problem: err}
			}
			seenRoles, r.roles = true, val
		case key == "org":
			if seenOrg {
				return Rules{}, &RuleError{Text: upTo, Problem: "org given twice: a route requires one organisation"}
			}
			if !validName(val, false) {
				return Rules{}, &RuleError{Text: upTo, Problem: fmt.Sprintf("org %q is not an organisation ID (letters, digits, _ and -, at most %d)", val, maxNameLength)}
			}
			seenOrg, r.org = true, val
		default:
			return Rules{}, &RuleError{Problem: fmt.Sprintf("unknown parameter %s (known: roles, org)", quotedName(key))}
		}
		if !more {
			return r, nil
		}
		rest = tail
	}
}

// quotedName names a parameter in an error, which is logged: quoted when
// it looks like one an operator could have mistyped ("role"), else not at
// all. A query that is not rules may be a client's own (a proxy that
// passes it, a request from anywhere), and may carry a token; so the
// errors about such parameters never quote the text either.
func quotedName(s string) string {
	if len(s) <= 20 && validName(s, false) {
		return strconv.Quote(s)
	}
	return "a parameter"
}

func checkRoles(v string) string {
	if v == "" {
		return "roles is empty: name at least one role, or leave the parameter out"
	}
	n := 0
	for rest := v; ; {
		name, tail, more := cut(rest, ',')
		if name == "" {
			return fmt.Sprintf("empty role name in %q", v)
		}
		if !validName(name, true) {
			return fmt.Sprintf("role %q has characters outside letters, digits and _.:- (or is longer than %d)", name, maxNameLength)
		}
		if n++; n > MaxRoles {
			return fmt.Sprintf("more than %d roles", MaxRoles)
		}
		if !more {
			return ""
		}
		rest = tail
	}
}

func validName(s string, role bool) bool {
	if s == "" || len(s) > maxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		case role && (c == '.' || c == ':'):
		default:
			return false
		}
	}
	return true
}

func cut(s string, sep byte) (before, after string, found bool) {
	if i := strings.IndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// AnyRole is the rule "one of these project roles" for a route written in
// code (Gatehouse's own pages: RequireRole), checked like a query's
// roles=a,b. Names are validated as there.
func AnyRole(names ...string) (Rules, error) {
	if len(names) == 0 {
		return Rules{}, nil
	}
	return ParseRules("roles="+strings.Join(names, ","), '&')
}

// ValidRoleName reports whether name can be used in a rule (letters,
// digits and _.:-, at most 64 characters).
func ValidRoleName(name string) bool { return validName(name, true) }

// Empty reports whether the rules require nothing but a session.
func (r Rules) Empty() bool { return r.roles == "" && r.org == "" }

// HasRoles reports whether the route requires a role (without allocating).
func (r Rules) HasRoles() bool { return r.roles != "" }

// Roles lists the roles any one of which the route requires (nil: none).
func (r Rules) Roles() []string {
	if r.roles == "" {
		return nil
	}
	return strings.Split(r.roles, ",")
}

// Org is the organisation ID the route requires ("" for none).
func (r Rules) Org() string { return r.org }

// String is the rules in their query form, for logs and spans.
func (r Rules) String() string {
	switch {
	case r.roles != "" && r.org != "":
		return "roles=" + r.roles + "&org=" + r.org
	case r.roles != "":
		return "roles=" + r.roles
	case r.org != "":
		return "org=" + r.org
	}
	return ""
}

// Roles are a user's project roles in the shape of ZITADEL's
// urn:zitadel:iam:org:project:roles claim: role → organisation ID →
// organisation domain. Which claim they are read from (the configured
// project's only, or every project's) is the caller's choice.
type Roles map[string]map[string]string

// RolesFromClaim converts a decoded JSON claim value into Roles, skipping
// entries of the wrong shape. Nil when v is not an object.
func RolesFromClaim(v any) Roles {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	out := make(Roles, len(m))
	for role, grants := range m {
		g, _ := grants.(map[string]any)
		orgs := make(map[string]string, len(g))
		for id, domain := range g {
			d, _ := domain.(string)
			orgs[id] = d
		}
		out[role] = orgs
	}
	return out
}

// Names are the role names, sorted.
func (rs Roles) Names() []string {
	out := make([]string, 0, len(rs))
	for name := range rs {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Subject is what the rules are checked against.
type Subject struct {
	Roles Roles
	// OrgID is the user's own organisation
	// (urn:zitadel:iam:user:resourceowner:id); "" when the token lacks it
	// (the urn:zitadel:iam:user:resourceowner scope was not granted),
	// which fails every org rule.
	OrgID string
}

// Denial says why rules refused a subject; NotDenied means allowed.
type Denial uint8

const (
	NotDenied Denial = iota
	MissingRole
	WrongOrg
)

// String is the reason as used on spans and in logs.
func (d Denial) String() string {
	switch d {
	case NotDenied:
		return ""
	case MissingRole:
		return "missing_role"
	case WrongOrg:
		return "wrong_org"
	}
	return "unknown"
}

// Check evaluates the rules for s. It does not allocate.
func (r Rules) Check(s Subject) Denial {
	if r.org != "" && s.OrgID != r.org {
		return WrongOrg
	}
	if r.roles == "" {
		return NotDenied
	}
	for rest := r.roles; ; {
		name, tail, more := cut(rest, ',')
		if grants, ok := s.Roles[name]; ok {
			if r.org == "" {
				return NotDenied
			}
			if _, ok := grants[r.org]; ok {
				return NotDenied
			}
		}
		if !more {
			return MissingRole
		}
		rest = tail
	}
}
