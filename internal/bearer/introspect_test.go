package bearer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/bearer"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestIntrospection_JunkTokensCannotEvictValidAnswers: inactive answers
// are cached apart from active ones, so a flood of made-up opaque tokens
// (each one introspected once, and found inactive) leaves a real client's
// cached answer in place: its next request costs no call.
func TestIntrospection_JunkTokensCannotEvictValidAnswers(t *testing.T) {
	t.Parallel()
	f := setup(t, fixtureOptions{})
	v, err := bearer.New(bearer.Config{Issuer: f.idp.URL, Audiences: []string{testenv.ClientID}, Introspect: true,
		CacheTTL: time.Hour, MaxCacheEntries: 50, Now: f.clock.Now}, f.provider)
	if err != nil {
		t.Fatal(err)
	}
	good := f.token(t, cli).AccessToken
	if r := v.Verify(context.Background(), "Bearer "+good); r.Outcome != bearer.Allowed || r.Cached {
		t.Fatalf("good token, first use: %v cached=%v (%v)", r.Outcome, r.Cached, r.Err)
	}
	for range 200 { // four times the cache
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		if r := v.Verify(context.Background(), "Bearer "+hex.EncodeToString(b)); r.Outcome != bearer.InvalidToken {
			t.Fatalf("made-up token: %v", r.Outcome)
		}
	}
	before := f.idp.Introspections()
	if r := v.Verify(context.Background(), "Bearer "+good); r.Outcome != bearer.Allowed || !r.Cached || f.idp.Introspections() != before {
		t.Errorf("good token after the flood: %v cached=%v, %d more introspections; want its cached answer",
			r.Outcome, r.Cached, f.idp.Introspections()-before)
	}
}
