package config_test

import (
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
)

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
				if config.IsLocalPath(tc.path) != tc.want {
					b.Fatalf("IsLocalPath(%q) != %v", tc.path, tc.want)
				}
			}
		})
	}
}
