package forward

import (
	"net/http"
	"testing"

	"github.com/gatehouse/gatehouse/internal/assertion"
)

// BenchmarkDecisionParts is everything this package and the assertion add
// to one allowed forward-auth decision (the session lookup aside): read
// the original request, read and check the rules, take the (reused)
// assertion, write the identity headers. The decision's budget is 10
// allocations and 80 % of bare net/http throughput in all.
func BenchmarkDecisionParts(b *testing.B) {
	signer, err := assertion.New(assertion.Options{Secret: "0123456789abcdef0123456789abcdef-secret", Issuer: "https://login.example.com"})
	if err != nil {
		b.Fatal(err)
	}
	r := request("GET", "/auth/forward?roles=ops,admin", proxyPeer, "X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https",
		"X-Forwarded-Host", "grafana.example.com", "X-Forwarded-Uri", "/d/abc?orgId=1", "Sec-Fetch-Mode", "navigate")
	subject := Subject{OrgID: "100", Roles: Roles{"admin": {"100": "acme"}, "viewer": {"100": "acme"}}}
	id := Identity{Subject: "312909075211944193", Email: "alice@example.com", PreferredUsername: "alice", Roles: []string{"admin", "viewer"}}
	h := make(http.Header, 8)
	b.ReportAllocs()
	for b.Loop() {
		o, err := Read(r, Forward, trusted)
		if err != nil || !o.Known {
			b.Fatal(o, err)
		}
		rules, err := RulesOf(r, Forward, o)
		if err != nil || rules.Check(subject) != NotDenied {
			b.Fatal(rules, err)
		}
		token, err := signer.Assertion(assertion.Claims{Audience: o.Host, Subject: id.Subject, Email: id.Email, Roles: id.Roles})
		if err != nil {
			b.Fatal(err)
		}
		clear(h)
		WriteIdentity(h, id, token, false)
	}
}
