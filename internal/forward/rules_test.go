package forward

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		sep     byte
		roles   string
		org     string
		problem string // "" = valid
	}{
		{"", '&', "", "", ""},
		{"roles=admin", '&', "admin", "", ""},
		{"roles=admin,ops", '&', "admin,ops", "", ""},
		{"org=123456789012345678", '&', "", "123456789012345678", ""},
		{"roles=billing.viewer,team:lead&org=acme-1", '&', "billing.viewer,team:lead", "acme-1", ""},
		{"org=1;roles=a_b", ';', "a_b", "1", ""},
		{"roles=", '&', "", "", "roles is empty"},
		{"roles", '&', "", "", `"roles" has no value`},
		{"roles=a,,b", '&', "", "", `empty role name in "a,,b"`},
		{"roles=a,", '&', "", "", "empty role name"},
		{"roles=,a", '&', "", "", "empty role name"},
		{"roles=a&roles=b", '&', "", "", "roles given twice"},
		{"org=1&org=2", '&', "", "", "org given twice"},
		{"roles=a&", '&', "", "", "empty parameter"},
		{"&roles=a", '&', "", "", "empty parameter"},
		{"role=admin", '&', "", "", `unknown parameter "role"`},
		{"roles=admin&redirect=https://x", '&', "", "", `unknown parameter "redirect"`},
		{"roles=ad%6Din", '&', "", "", `role "ad%6Din" has characters outside`},
		{"roles=a+b", '&', "", "", "has characters outside"},
		{"roles=a b", '&', "", "", "has characters outside"},
		{"roles=<script>", '&', "", "", "has characters outside"},
		{"roles=admin;org=1", '&', "", "", `role "admin;org=1" has characters outside`},
		{"org=a.b", '&', "", "", "is not an organisation ID"},
		{"org=", '&', "", "", "is not an organisation ID"},
		{"roles=" + strings.Repeat("r", 65), '&', "", "", "longer than 64"},
		{"roles=" + strings.TrimSuffix(strings.Repeat("r,", 17), ","), '&', "", "", "more than 16 roles"},
		{"roles=" + strings.Repeat("a", 2000), '&', "", "", "longer than 1024 characters"},
	}
	for _, tc := range cases {
		r, err := ParseRules(tc.in, tc.sep)
		if tc.problem == "" {
			if err != nil || strings.Join(r.Roles(), ",") != tc.roles || r.Org() != tc.org {
				t.Errorf("ParseRules(%q) = %+v, %v; want roles %q org %q", tc.in, r, err, tc.roles, tc.org)
			}
			continue
		}
		var re *RuleError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.problem) {
			t.Errorf("ParseRules(%q) error = %v, want a RuleError containing %q", tc.in, err, tc.problem)
		}
		if !r.Empty() {
			t.Errorf("ParseRules(%q) failed but returned rules %+v", tc.in, r)
		}
	}
}

func TestRules_Check(t *testing.T) {
	t.Parallel()
	alice := Subject{OrgID: "100", Roles: Roles{
		"admin":  {"100": "acme.example.com"},
		"viewer": {"200": "partner.example.com"},
	}}
	noOrg := Subject{Roles: Roles{"admin": {"100": "acme.example.com"}}}
	cases := []struct {
		rules   string
		subject Subject
		want    Denial
	}{
		{"", alice, NotDenied},
		{"", Subject{}, NotDenied},
		{"roles=admin", alice, NotDenied},
		{"roles=ops,admin", alice, NotDenied}, // any one suffices
		{"roles=ops", alice, MissingRole},
		{"roles=Admin", alice, MissingRole}, // role keys are case-sensitive
		{"roles=admin", Subject{}, MissingRole},
		{"org=100", alice, NotDenied},
		{"org=200", alice, WrongOrg}, // a role granted by 200 is not membership of 200
		{"org=100", noOrg, WrongOrg}, // no resourceowner claim: fails closed
		{"roles=admin&org=100", alice, NotDenied},
		{"roles=viewer&org=100", alice, MissingRole}, // viewer is granted in 200, not in 100
		{"roles=viewer,admin&org=100", alice, NotDenied},
		{"roles=admin&org=200", alice, WrongOrg},
	}
	for _, tc := range cases {
		r, err := ParseRules(tc.rules, '&')
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Check(tc.subject); got != tc.want {
			t.Errorf("%q.Check(%+v) = %v, want %v", tc.rules, tc.subject, got, tc.want)
		}
	}
}

// TestRulesOf_ClientCannotAddOrRemoveARule: for every adapter, whatever
// the client puts into its own request — path, query, headers, including
// the proxy headers the proxy copies from it — the rules are the
// operator's, or the decision fails closed (an error, never an allow).
func TestRulesOf_ClientCannotAddOrRemoveARule(t *testing.T) {
	t.Parallel()
	hostile := []string{"X-Gatehouse-Rules", "roles=", "X-Rules", "", "X-Original-Method", "GET"}
	cases := []struct {
		name     string
		adapter  Adapter
		r        func() Original
		target   string
		headers  []string
		want     string // the rules that must hold; "error" = must fail closed
		wantErrQ bool
	}{
		// nginx: the operator's auth_request location or auth-url carries the query.
		{name: "verify: operator rules stay despite a client query", adapter: Verify,
			target:  "/auth/verify?roles=admin",
			headers: []string{"X-Original-URL", "https://app.example.com/x?roles=guest&org=1"},
			want:    "roles=admin"},
		{name: "verify: no operator rules, client query does not add one", adapter: Verify,
			target:  "/auth/verify",
			headers: []string{"X-Original-URL", "https://app.example.com/x?roles=guest"},
			want:    ""},
		// nginx never adds the client's query to the subrequest: a query
		// equal to the page's is the operator's (a page may well be
		// /admin/users?roles=admin).
		{name: "verify: the operator's rules equal to the page's query stay", adapter: Verify,
			target:  "/auth/verify?roles=admin",
			headers: []string{"X-Original-URL", "https://app.example.com/admin/users?roles=admin"},
			want:    "roles=admin"},
		// Traefik address / Caddy uri.
		{name: "forward: operator rules stay", adapter: Forward,
			target:  "/auth/forward?roles=admin&org=100",
			headers: []string{"X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/x?org=999"},
			want:    "roles=admin&org=100"},
		{name: "forward: Caddy passing the client's query (uri without ?) is refused", adapter: Forward,
			target:   "/auth/forward?org=999",
			headers:  []string{"X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/x?org=999"},
			wantErrQ: true},
		{name: "forward: a client matching the operator's rules text exactly cannot drop them", adapter: Forward,
			target:   "/auth/forward?roles=admin",
			headers:  []string{"X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/?roles=admin"},
			wantErrQ: true},
		// Envoy: the client's path and query follow the operator's segment.
		{name: "envoy: operator rules in the prefix stay", adapter: Envoy,
			target: "/auth/forward;roles=admin/x;roles=guest?roles=guest&org=1",
			want:   "roles=admin"},
		{name: "envoy: client path segments do not add rules", adapter: Envoy,
			target: "/auth/forward/;roles=admin;org=1/x?roles=guest",
			want:   ""},
		{name: "envoy: client path cannot close the operator segment", adapter: Envoy,
			target: "/auth/forward;org=100//;roles=guest",
			want:   "org=100"},
		{name: "envoy: encoded slash in the client path is just path", adapter: Envoy,
			target: "/auth/forward;roles=admin/%2F;org=1",
			want:   "roles=admin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := append(append([]string{}, tc.headers...), hostile...)
			r := request("GET", tc.target, proxyPeer, append(h, "Host", "app.example.com")...)
			o, err := Read(r, tc.adapter, trusted)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			rules, err := RulesOf(r, tc.adapter, o)
			if tc.wantErrQ {
				if !errors.Is(err, ErrClientQuery) {
					t.Fatalf("RulesOf = %v, %v; want ErrClientQuery", rules, err)
				}
				return
			}
			if err != nil || rules.String() != tc.want {
				t.Fatalf("RulesOf = %q, %v; want %q", rules.String(), err, tc.want)
			}
		})
	}
}

func TestRulesOf_EnvoyNeedsItsPrefix(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"/auth/forward;roles=a", "/auth/forward;roles=a?x=1"} {
		r := request("GET", target, proxyPeer, "Host", "app.example.com")
		if _, err := RulesOf(r, Envoy, Original{}); err == nil {
			t.Errorf("RulesOf(%q) accepted a request without the client's path", target)
		}
	}
}

func BenchmarkRules_ParseAndCheck(b *testing.B) {
	s := Subject{OrgID: "100", Roles: Roles{"viewer": {"100": "acme"}, "admin": {"100": "acme"}}}
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseRules("roles=ops,admin&org=100", '&')
		if err != nil || r.Check(s) != NotDenied {
			b.Fatal(err)
		}
	}
}

// TestParseRules_ErrorsNeverQuoteWhatIsNotARule: rule errors are logged,
// and a query that is not rules may be a client's (a proxy passing it on,
// a request from anywhere) carrying a token (RFC 6750 allows
// ?access_token=). No error quotes a parameter other than roles and org,
// nor anything after the parameter at fault.
func TestParseRules_ErrorsNeverQuoteWhatIsNotARule(t *testing.T) {
	t.Parallel()
	const secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.c2ln"
	for _, in := range []string{
		"access_token=" + secret,
		secret,
		"roles=admin&" + secret,
		"roles=&access_token=" + secret,
		"roles=admin&roles=x&access_token=" + secret,
		"org=bad.id&access_token=" + secret,
		"access_token=" + secret + strings.Repeat("x", maxRulesText),
		"opaqueSecretToken123456789=1",
	} {
		_, err := ParseRules(in, '&')
		if err == nil {
			t.Fatalf("ParseRules(%q) accepted", in)
		}
		if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "opaqueSecret") {
			t.Errorf("ParseRules(%.40q...) error quotes the token: %v", in, err)
		}
	}
}
