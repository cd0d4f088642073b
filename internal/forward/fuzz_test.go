package forward

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzRead: whatever a (trusted) proxy's headers say, Read never panics,
// and an original URL it accepts is a plain http(s) URL whose host is the
// Host it reports, with no userinfo, fragment, whitespace or control
// characters; its return URL has no backslash before the query; the rules
// read next to it never panic either.
func FuzzRead(f *testing.F) {
	f.Add(uint8(1), "GET", "https://app.example.com/x?y=1", "", "", "", "/auth/verify", "gatehouse")
	f.Add(uint8(1), "POST", "https://a@evil/", "app.example.com", "", "", "/auth/verify?roles=a", "gatehouse")
	f.Add(uint8(2), "GET", "", "app.example.com:8443", "/deep?x", "http", "/auth/forward?roles=admin", "gatehouse")
	f.Add(uint8(2), "DELETE", "", "[::1]:80", "/x#frag", "https", "/auth/forward", "gatehouse")
	f.Add(uint8(3), "PUT", "", "", "", "https", "/auth/forward;roles=a,b;org=1/app/x?q=1", "App.Example.com:443")
	f.Add(uint8(3), "GET", "", "", "", "", "/auth/forward;roles=/", "app")
	f.Add(uint8(2), "GET", "", "app.example.com", `/\evil.example/%zz`, "https", "/auth/forward", "gatehouse")
	f.Add(uint8(2), "GET", "", "app.example.com", `/\evil.example/?q=C:\dir`, "https", "/auth/forward", "gatehouse")
	f.Add(uint8(1), "GET", `https://app.example.com/a?q=\`, "", "", "", "/auth/verify", "gatehouse")
	f.Fuzz(func(t *testing.T, adapter uint8, method, origURL, fwdHost, fwdURI, fwdProto, target, host string) {
		r := &http.Request{
			Method:     method,
			RequestURI: target,
			Host:       host,
			RemoteAddr: proxyPeer,
			Header:     http.Header{},
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		r.URL = u
		for k, v := range map[string]string{hOriginalURL: origURL, hFwdHost: fwdHost, hFwdURI: fwdURI, hFwdProto: fwdProto, hFwdMethod: method, hOriginalMethod: method} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		a := Adapter(adapter%3 + 1)
		o, err := Read(r, a, trusted)
		if err == nil && o.Known {
			// Always: an http(s) origin with a canonical host, and a
			// request-target starting with "/".
			origin, perr := url.Parse(o.Scheme + "://" + o.Host + "/")
			switch {
			case perr != nil:
				t.Fatalf("accepted %+v, but its origin does not parse: %v", o, perr)
			case origin.Scheme != "http" && origin.Scheme != "https":
				t.Fatalf("accepted scheme %q", origin.Scheme)
			case origin.User != nil || !strings.EqualFold(origin.Host, o.Host) || o.Host != strings.ToLower(o.Host):
				t.Fatalf("Host %q but the origin %q is for %q", o.Host, origin, origin.Host)
			case !strings.HasPrefix(o.URI, "/"):
				t.Fatalf("accepted URI %q", o.URI)
			}
		}
		// The return trip, when there is one, is the whole original URL, and
		// one that parses, without userinfo, fragment or odd bytes.
		if back := o.URL(); back != "" {
			parsed, perr := url.Parse(back)
			switch {
			case back != o.Scheme+"://"+o.Host+o.URI:
				t.Fatalf("URL %q, want %q", back, o.Scheme+"://"+o.Host+o.URI)
			case perr != nil:
				t.Fatalf("return URL %q does not parse: %v", back, perr)
			case parsed.User != nil || parsed.Fragment != "" || parsed.Opaque != "" || !strings.EqualFold(parsed.Host, o.Host):
				t.Fatalf("return URL %q with userinfo, fragment, opaque part or another host", back)
			case strings.ContainsAny(o.URI, " \t\r\n#\x00\x7f"):
				t.Fatalf("return URL's request-target %q has a space, control byte or fragment", o.URI)
			}
		}
		// The return trip never has a backslash where a browser reads a slash.
		if back, _, _ := strings.Cut(o.URL(), "?"); strings.Contains(back, `\`) {
			t.Fatalf("URL %q has a backslash before its query", o.URL())
		}
		_, _ = RulesOf(r, a, o)
	})
}

// FuzzEnvoyRules: the client's part of an Envoy request-target (its path
// and query, appended after the operator's path_prefix) never changes the
// rules: they are those of the operator's segment, or an error for both.
func FuzzEnvoyRules(f *testing.F) {
	f.Add("roles=admin", "/x?roles=guest")
	f.Add("", "/;roles=admin/x")
	f.Add("org=1;roles=a,b", "//;org=2")
	f.Add("roles=a", "/%2F;roles=b?org=1#x")
	f.Add("roles=", "/")
	f.Fuzz(func(t *testing.T, operator, client string) {
		if strings.ContainsAny(operator, "/?#") {
			return // not a path segment: the operator cannot write it into path_prefix
		}
		if !strings.HasPrefix(client, "/") {
			client = "/" + client // Envoy's :path always starts with "/"
		}
		target := ForwardPath
		if operator != "" {
			target += ";" + operator
		}
		target += client
		r := &http.Request{Method: "GET", RequestURI: target, Host: "app.example.com", RemoteAddr: proxyPeer, Header: http.Header{}, URL: &url.URL{Path: target}}
		got, gotErr := RulesOf(r, Envoy, Original{})
		want, wantErr := ParseRules(operator, ';')
		if (gotErr == nil) != (wantErr == nil) || got != want {
			t.Fatalf("operator %q, client %q: rules %q (%v), want %q (%v)", operator, client, got, gotErr, want, wantErr)
		}
	})
}

// FuzzParseRules: any rules text either fails with a RuleError or yields
// rules that print and parse back to themselves, and Check never panics.
func FuzzParseRules(f *testing.F) {
	for _, s := range []string{"roles=a,b&org=1", "roles=", "org=1&org=2", "roles=a%2Cb", "x=y", "roles=a&", strings.Repeat("roles=a,", 20)} {
		f.Add(s)
	}
	subject := Subject{OrgID: "1", Roles: Roles{"a": {"1": "x"}, "b": {"2": "y"}}}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRules(s, '&')
		if err != nil {
			if _, ok := err.(*RuleError); !ok {
				t.Fatalf("ParseRules(%q) error %T is not a RuleError", s, err)
			}
			return
		}
		again, err := ParseRules(r.String(), '&')
		if err != nil || again != r {
			t.Fatalf("ParseRules(%q) = %q, which parses back to %q, %v", s, r, again, err)
		}
		_ = r.Check(subject)
	})
}
