package forward

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestWriteIdentity_OverwritesEveryClientHeader: the responder owns every
// identity header; whatever the client (or an earlier handler) put there
// is replaced, and a header with nothing to say is present and empty, so
// the proxy copying it replaces the client's copy upstream.
func TestWriteIdentity_OverwritesEveryClientHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		id      Identity
		assert  string
		forward bool
		want    map[string]string
	}{
		{"full identity, token withheld", Identity{Subject: "u1", Email: "a@example.com", PreferredUsername: "alice",
			Roles: []string{"admin", "ops"}, AccessToken: "at"}, "eyJ.x.y", false,
			map[string]string{HeaderUser: "u1", HeaderEmail: "a@example.com", HeaderPreferredUsername: "alice",
				HeaderGroups: "admin,ops", HeaderAccessToken: "", HeaderAssertion: "eyJ.x.y"}},
		{"token forwarded", Identity{Subject: "u1", AccessToken: "at"}, "", true,
			map[string]string{HeaderUser: "u1", HeaderEmail: "", HeaderPreferredUsername: "", HeaderGroups: "",
				HeaderAccessToken: "at", HeaderAssertion: ""}},
		{"one role", Identity{Subject: "u1", Roles: []string{"viewer"}}, "", false,
			map[string]string{HeaderGroups: "viewer"}},
		{"unlistable role names left out", Identity{Subject: "u1", Roles: []string{"a,b", "ok", "", "with space", "x\ny", "z"}}, "", false,
			map[string]string{HeaderGroups: "ok,z"}},
		{"control characters are never written", Identity{Subject: "u1\r\nX-Evil: 1", Email: "a@example.com\x00"}, "", false,
			map[string]string{HeaderUser: "", HeaderEmail: ""}},
		{"UTF-8 names pass", Identity{Subject: "u1", PreferredUsername: "jürgen"}, "", false,
			map[string]string{HeaderPreferredUsername: "jürgen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for _, k := range IdentityHeaders {
				h.Add(k, "spoofed-by-client")
				h.Add(k, "twice")
			}
			WriteIdentity(h, tc.id, tc.assert, tc.forward)
			for _, k := range IdentityHeaders {
				if v := h.Values(k); len(v) != 1 || v[0] == "spoofed-by-client" {
					t.Errorf("%s = %q, want exactly one value written by WriteIdentity", k, v)
				}
			}
			for k, want := range tc.want {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestWriteIdentity_EmptyHeadersGoOnTheWire: Envoy and Traefik copy a
// header only if the answer has it; an empty value must be sent, not
// dropped, for it to replace the client's.
func TestWriteIdentity_EmptyHeadersGoOnTheWire(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteIdentity(w.Header(), Identity{Subject: "u1"}, "", false)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, k := range IdentityHeaders {
		if _, ok := resp.Header[k]; !ok {
			t.Errorf("%s is not on the wire", k)
		}
	}
	if resp.Header.Get(HeaderUser) != "u1" {
		t.Errorf("user = %q", resp.Header.Get(HeaderUser))
	}
}

func TestClearIdentity(t *testing.T) {
	t.Parallel()
	h := http.Header{HeaderUser: {"x"}, HeaderAssertion: {"y"}}
	ClearIdentity(h)
	for _, k := range IdentityHeaders {
		if v := h.Values(k); len(v) != 1 || v[0] != "" {
			t.Errorf("%s = %q after ClearIdentity", k, v)
		}
	}
}

func BenchmarkWriteIdentity(b *testing.B) {
	id := Identity{Subject: "312909075211944193", Email: "alice@example.com", PreferredUsername: "alice", Roles: []string{"admin", "viewer"}}
	h := make(http.Header, 16)
	b.ReportAllocs()
	for b.Loop() {
		WriteIdentity(h, id, "eyJhbGciOiJFUzI1NiJ9.e30.sig", false)
	}
}
