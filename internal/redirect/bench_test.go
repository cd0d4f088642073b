package redirect

import "testing"

// BenchmarkIsLocalPath is the callbackUrl check the sign-in page, the
// sign-in POST, the callback and every redirect to sign in run.
func BenchmarkIsLocalPath(b *testing.B) {
	for _, tc := range []struct {
		name, path string
		want       bool
	}{
		{"Local", "/profile?tab=claims", true},
		{"LongLocal", "/admin/reports/2026/11/summary?format=html&page=3&sort=desc", true},
		{"OffSite", "//evil.example/x", false},
		{"Scheme", "https://evil.example/", false},
		{"Backslash", "/\\evil.example", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if IsLocalPath(tc.path) != tc.want {
					b.Fatalf("IsLocalPath(%q) != %v", tc.path, tc.want)
				}
			}
		})
	}
}

// BenchmarkResolve is the return-URL decision for an absolute URL on an
// allowed subdomain (the forward-auth case).
func BenchmarkResolve(b *testing.B) {
	p := mustPolicy(b, "https://login.example.com/auth/callback", prodHosts)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := p.Resolve("https://ci.tools.example.com/build/1?x=2"); !ok {
			b.Fatal("refused")
		}
	}
}
