package bearer_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"

	"github.com/gatehouse/gatehouse/internal/bearer"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestSecrecy_NoTokenHashOrAssertionInLogsOrSpans runs every path (JWT
// fresh and cached, opaque cold and cached, revoked, forged, outage) with
// Gatehouse authenticating by key, logs each result and puts it on an
// auth.verify span as the decision endpoints will, then looks for every
// token, its SHA-256 (hex, base64) and every client assertion in the
// captured logs and in all recorded spans, the OpenID library's included.
func TestSecrecy_NoTokenHashOrAssertionInLogsOrSpans(t *testing.T) {
	key, err := devidp.NewApplicationKey(testenv.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, fixtureOptions{key: &key})
	tracer := otel.Tracer("gatehouse-test")
	var tokens []string
	judge := func(tok string) bearer.Result {
		tokens = append(tokens, tok)
		ctx, span := tracer.Start(context.Background(), "auth.verify")
		res := f.v.Verify(ctx, "Bearer "+tok)
		span.SetAttributes(res.Attributes()...)
		if res.Err != nil {
			span.RecordError(res.Err)
			span.SetStatus(codes.Error, res.Err.Error())
		}
		span.End()
		f.verify(t, tok) // and the log line
		return res
	}

	jwt := sign(t, f, validClaims(f)) // Gatehouse's client logs in with its key only; the provider signs
	judge(jwt)
	judge(jwt)
	judge(f.token(t, jwtApp).AccessToken)
	opaque := f.token(t, cli).AccessToken
	judge(opaque)
	judge(opaque)
	revoked := f.token(t, cli).AccessToken
	judge(revoked)
	f.idp.Revoke(t, cli, revoked)
	f.clock.Advance(2 * time.Minute)
	judge(revoked)
	judge(f.token(t, stranger).AccessToken)
	judge(signWithUnknownKey(t, f, "forged", validClaims(f)))
	judge(unsigned(map[string]any{"alg": "none"}, validClaims(f), func(string) []byte { return nil }))
	spare := f.token(t, cli).AccessToken
	f.idp.Stop()
	if res := judge(spare); res.Outcome != bearer.Unavailable {
		t.Fatalf("during the outage: %v", res.Outcome)
	}

	assertions := f.idp.ClientAssertions()
	if len(assertions) == 0 {
		t.Fatal("no client assertion was sent: the key path was not exercised")
	}
	var needles []string
	for _, tok := range tokens {
		sum := sha256.Sum256([]byte(tok))
		needles = append(needles, tok, tail(tok), hex.EncodeToString(sum[:]),
			base64.StdEncoding.EncodeToString(sum[:]), base64.RawURLEncoding.EncodeToString(sum[:]))
	}
	for _, a := range assertions {
		needles = append(needles, a, tail(a))
	}

	var haystack strings.Builder
	haystack.WriteString(f.logs.String())
	sawIntrospect := false
	for _, s := range spans.Ended() {
		sawIntrospect = sawIntrospect || s.Name() == "Introspect"
		haystack.WriteString(s.Name() + " " + s.Status().Description + "\n")
		for _, a := range s.Attributes() {
			haystack.WriteString(string(a.Key) + "=" + a.Value.String() + "\n")
		}
		for _, e := range s.Events() {
			haystack.WriteString(e.Name + "\n")
			for _, a := range e.Attributes {
				haystack.WriteString(string(a.Key) + "=" + a.Value.String() + "\n")
			}
		}
	}
	if !sawIntrospect || !strings.Contains(f.logs.String(), `"credential":"opaque"`) {
		t.Fatal("the capture missed the introspection span or the result logs: the scan would prove nothing")
	}
	text := haystack.String()
	for _, n := range needles {
		if strings.Contains(text, n) {
			t.Errorf("found a secret (%d bytes, starting %.6s…) in the logs or spans", len(n), n)
		}
	}
}

// tail is the last 24 bytes: a JWT's signature or the end of an opaque
// token, enough to catch a truncated copy.
func tail(s string) string { return s[len(s)-24:] }
