package bearer_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/bearer"
)

// FuzzVerify: any header value gets a verdict of the closed set, never a
// panic, and never "allowed" (the provider is not connected, so nothing
// can verify). A refusal carries a reason; a too-long value is refused as
// such whatever it holds.
func FuzzVerify(f *testing.F) {
	for _, s := range []string{
		"", "Bearer ", "Bearer abc", "bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
		"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJpc3MiOiJodHRwOi8vaWRwIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln",
		"Bearer a.b.c.d.e", "Bearer ====", "Basic dXNlcjpwdw==", "Bearer " + strings.Repeat("x", bearer.MaxTokenLength+1),
	} {
		f.Add(s)
	}
	provider := auth.NewProvider(auth.ProviderConfig{Issuer: "http://idp.invalid", ClientID: "c", ClientSecret: "s"},
		&http.Client{Timeout: time.Second}, nil)
	v, err := bearer.New(bearer.Config{Issuer: "http://idp.invalid", Audiences: []string{"c"}, Introspect: true, CacheTTL: time.Minute}, provider)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, h string) {
		res := v.Verify(context.Background(), h)
		switch res.Outcome {
		case bearer.InvalidToken, bearer.Unavailable:
		default:
			t.Fatalf("%q: outcome %v", h, res.Outcome)
		}
		if res.Reason == "" || res.Err == nil || res.Identity != nil {
			t.Fatalf("%q: reason %q err %v identity %v", h, res.Reason, res.Err, res.Identity)
		}
		if len(h) > bearer.MaxTokenLength+64 && res.Reason != bearer.ReasonTooLong {
			t.Fatalf("%d bytes: %q", len(h), res.Reason)
		}
		if res.Outcome == bearer.InvalidToken && res.WWWAuthenticate() != `Bearer error="invalid_token"` {
			t.Fatal(res.WWWAuthenticate())
		}
	})
}
