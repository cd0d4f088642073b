package trustedproxy

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestClientIP_BelievesForwardedForOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted := prefixes("10.0.0.0/8", "fd00::/8")
	cases := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"NoProxiesConfiguredIgnoresHeader", "203.0.113.7:4000", []string{"198.51.100.1"}, nil, "203.0.113.7"},
		{"UntrustedPeerIgnoresHeader", "203.0.113.7:4000", []string{"198.51.100.1"}, trusted, "203.0.113.7"},
		{"TrustedPeerWithoutHeaderIsTheClient", "10.1.2.3:4000", nil, trusted, "10.1.2.3"},
		{"TrustedPeerNamesClient", "10.1.2.3:4000", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"SpoofedLeftEntriesAreIgnored", "10.1.2.3:4000", []string{"1.1.1.1, 198.51.100.1"}, trusted, "198.51.100.1"},
		{"ChainOfTrustedProxiesIsSkipped", "10.1.2.3:4000", []string{"198.51.100.1, 10.9.9.9", "10.8.8.8"}, trusted, "198.51.100.1"},
		{"AllTrustedTakesLeftmost", "10.1.2.3:4000", []string{"10.0.0.1, 10.0.0.2"}, trusted, "10.0.0.1"},
		{"GarbageStopsAtLastRealAddress", "10.1.2.3:4000", []string{"198.51.100.1, not-an-ip"}, trusted, "10.1.2.3"},
		{"GarbageLeftOfClientIsIrrelevant", "10.1.2.3:4000", []string{"<script>, 198.51.100.1"}, trusted, "198.51.100.1"},
		{"EntryWithPort", "10.1.2.3:4000", []string{"198.51.100.1:5555"}, trusted, "198.51.100.1"},
		{"IPv6Peer", "[fd00::1]:4000", []string{"2001:db8::5"}, trusted, "2001:db8::5"},
		{"IPv4MappedPeerIsTrusted", "[::ffff:10.1.2.3]:4000", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"NotTCPPeerSharesOneBucket", "@", nil, trusted, "0.0.0.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(r, tc.trusted); got.String() != tc.want {
				t.Fatalf("ClientIP = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFromTrusted_OnlyListedPeers(t *testing.T) {
	t.Parallel()
	trusted := prefixes("10.0.0.0/8", "127.0.0.1/32")
	cases := []struct {
		remote  string
		trusted []netip.Prefix
		want    bool
	}{
		{"10.1.2.3:4000", trusted, true},
		{"[::ffff:10.1.2.3]:4000", trusted, true},
		{"127.0.0.1:1", trusted, true},
		{"127.0.0.2:1", trusted, false},
		{"203.0.113.7:4000", trusted, false},
		{"10.1.2.3:4000", nil, false}, // nothing configured: nobody is a proxy
		{"@", trusted, false},
		{"", trusted, false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if got := FromTrusted(r, tc.trusted); got != tc.want {
			t.Errorf("FromTrusted(%q, %v) = %v, want %v", tc.remote, tc.trusted, got, tc.want)
		}
	}
}
