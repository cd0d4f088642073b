package server_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestTelemetry_BearerDecisionsLeakNoSecret runs bearer decisions of every
// kind through the whole app (JWT fresh and reused, opaque cold and
// cached, revoked, another application's, forged, and during an outage)
// with Gatehouse authenticating by key and FORWARD_ACCESS_TOKEN on, then
// searches every span (the OpenID library's included), metric and log
// line for each token, its SHA-256 (the cache key: hex and base64), the
// assertions and the forwarded tokens the answers carried, and the
// client assertions Gatehouse sent to introspect.
func TestTelemetry_BearerDecisionsLeakNoSecret(t *testing.T) {
	t.Parallel()
	key, parsed := testenv.ApplicationKey(t)
	cli := devidp.Client{ID: "api-cli", Secret: "cli-secret-for-the-leak-test", RedirectURIs: []string{"http://127.0.0.1:1/cli"}}
	other := devidp.Client{ID: "api-jwt", Secret: "jwt-secret-for-the-leak-test", RedirectURIs: []string{"http://127.0.0.1:1/jwt"}, JWTAccessTokens: true}
	tr := newTraced(t)
	var logs testenv.SyncBuffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	clock := &testenv.Clock{}
	idp, app := testenv.Setup(t, testenv.IdPOptions{Key: &key, Clients: []devidp.Client{cli, other}}, testenv.AppOptions{
		Modify: func(c *config.Config) {
			c.ClientKey = parsed
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} // this test speaks as the proxy
			c.ForwardAccessToken = true
		},
		Options: server.Options{Telemetry: tr.tel, Now: clock.Now, Logger: log},
	})
	secrets := map[string]string{}
	var outcomes []int
	decide := func(label, token string) {
		for _, path := range []string{"/auth/verify?roles=admin", "/auth/forward?roles=nobody"} {
			req, _ := http.NewRequest(http.MethodGet, app.URL+path, nil)
			req.Header.Set("X-Original-URL", app.URL+"/api/items?q=1")
			req.Header.Set("X-Forwarded-Method", "GET")
			req.Header.Set("X-Forwarded-Host", strings.TrimPrefix(app.URL, "http://"))
			req.Header.Set("X-Forwarded-Uri", "/api/items?q=1")
			req.Header.Set("Authorization", "Bearer "+token)
			r := testenv.NewBrowser(t).Do(req)
			outcomes = append(outcomes, r.StatusCode)
			if a := r.Header.Get("X-Gatehouse-Assertion"); a != "" {
				secrets[label+" assertion"] = a
			}
		}
		sum := sha256.Sum256([]byte(token))
		secrets[label] = token
		secrets[label+" tail"] = token[len(token)-24:]
		secrets[label+" sha256 hex"] = hex.EncodeToString(sum[:])
		secrets[label+" sha256 base64"] = base64.StdEncoding.EncodeToString(sum[:])
		secrets[label+" sha256 base64url"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	sign := func(claims map[string]any) string {
		now := clock.Now()
		c := map[string]any{"iss": idp.URL, "sub": "300000000000000001", "aud": []string{testenv.ClientID}, "client_id": testenv.ClientID,
			"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "jti": fmt.Sprint(now.UnixNano()),
			"urn:zitadel:iam:org:project:roles": map[string]any{"admin": map[string]any{devidp.DemoOrgID: devidp.DemoOrgDomain}}}
		for k, v := range claims {
			c[k] = v
		}
		tok, err := idp.SignJWT(c, "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	jwt := sign(nil)
	decide("JWT", jwt)
	decide("JWT", jwt)
	opaque := idp.Tokens(t, cli, "alice", pw).AccessToken
	decide("opaque", opaque)
	decide("opaque", opaque)
	revoked := idp.Tokens(t, cli, "bob", pw).AccessToken
	decide("revoked", revoked)
	idp.Revoke(t, cli, revoked)
	clock.Advance(2 * time.Minute)
	decide("revoked", revoked)
	decide("other application's", idp.Tokens(t, other, "alice", pw).AccessToken)
	bob := strings.Split(sign(map[string]any{"sub": "300000000000000002"}), ".")
	decide("forged", bob[0]+"."+bob[1]+"."+strings.Split(jwt, ".")[2]) // bob's claims under alice's token's signature
	spare := idp.Tokens(t, cli, "alice", pw).AccessToken
	idp.Stop()
	decide("during the outage", spare)

	for _, want := range []int{200, 403, 401, 503} {
		if !strings.Contains(fmt.Sprint(outcomes), fmt.Sprint(want)) {
			t.Fatalf("outcomes %v lack %d: the scan would not cover every answer", outcomes, want)
		}
	}
	for i, a := range idp.ClientAssertions() {
		secrets[fmt.Sprintf("client assertion %d", i)] = a
	}
	if len(idp.ClientAssertions()) == 0 {
		t.Fatal("Gatehouse sent no client assertion: the key path was not exercised")
	}
	for name, v := range secrets {
		if len(v) < 16 {
			t.Fatalf("secret %s = %q: the test did not capture it", name, v)
		}
	}
	var haystack strings.Builder
	sawIntrospect := false
	for _, s := range append(tr.spans(), librarySpans.Ended()...) {
		sawIntrospect = sawIntrospect || s.Name() == "Introspect"
		fmt.Fprintln(&haystack, s.Name(), s.Status().Description, s.Attributes(), s.Resource().Attributes())
		for _, e := range s.Events() {
			fmt.Fprintln(&haystack, e.Name, e.Attributes)
		}
	}
	fmt.Fprintf(&haystack, "%+v\n", tr.metricData(t))
	haystack.WriteString(logs.String())
	if !sawIntrospect || !strings.Contains(haystack.String(), "auth.credential") || !strings.Contains(haystack.String(), "auth.bearer.verify") ||
		!strings.Contains(logs.String(), "the identity provider cannot be asked") {
		t.Fatal("the capture missed the bearer decisions: the scan would prove nothing")
	}
	for name, v := range secrets {
		if strings.Contains(haystack.String(), v) {
			t.Errorf("the %s appears in spans, metrics or logs", name)
		}
	}
}
