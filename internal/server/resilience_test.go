package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// eventually polls check until it returns true or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readiness(t *testing.T, b *testenv.Browser, app *testenv.App) (int, map[string]any) {
	t.Helper()
	r := b.Get(app.URL + "/readyz")
	var body map[string]any
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
		t.Fatalf("/readyz body is not JSON: %q", r.Body)
	}
	return r.StatusCode, body
}

func TestProviderDownAtStart_BecomesReadyWithoutRestart(t *testing.T) {
	t.Parallel()
	ln, appURL := testenv.Listen(t)
	idp := testenv.StartIdP(t, testenv.IdPOptions{AppURLs: []string{appURL}})
	idp.Stop()
	app := testenv.StartApp(t, ln, appURL, idp, testenv.AppOptions{}, false)
	b := testenv.NewBrowser(t)

	if r := b.Get(app.URL + "/healthz"); r.StatusCode != http.StatusOK {
		t.Fatalf("/healthz with the provider down = %d, want 200 (liveness touches no dependency)", r.StatusCode)
	}
	code, body := readiness(t, b, app)
	checks, _ := body["checks"].(map[string]any)
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(fmt.Sprint(checks["identity_provider"]), "pending") {
		t.Fatalf("/readyz = %d %v, want 503 naming the identity provider check", code, body)
	}
	r := b.StartSignIn(app, "")
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" ||
		!strings.Contains(r.Body, "temporarily unavailable") {
		t.Fatalf("sign-in with the provider down = %s, want friendly 503 with Retry-After", r)
	}

	idp.Start(t)
	eventually(t, 15*time.Second, "readiness after the provider came up", func() bool {
		c, _ := readiness(t, b, app)
		return c == http.StatusOK
	})
	if landed := b.Login(app, "alice", pw); !strings.HasSuffix(landed.URL, "/profile") || landed.StatusCode != http.StatusOK {
		t.Fatalf("login after recovery landed on %s", landed)
	}
}

func TestProviderOutageAfterReady_KeepsReadinessAndSessions(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	b.Login(app, "alice", pw)

	idp.Stop()
	newcomer := testenv.NewBrowser(t)
	eventually(t, 5*time.Second, "sign-in to notice the outage", func() bool {
		return newcomer.StartSignIn(app, "").StatusCode == http.StatusServiceUnavailable
	})
	r := newcomer.StartSignIn(app, "")
	if r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, "temporarily unavailable") {
		t.Fatalf("sign-in during the outage = %s, want friendly 503 with Retry-After", r)
	}
	if code, body := readiness(t, b, app); code != http.StatusOK {
		t.Fatalf("/readyz during a provider outage after start = %d %v; must stay 200", code, body)
	}
	if r := b.Get(app.URL + "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("landing during the outage = %d", r.StatusCode)
	}
	if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK {
		t.Fatalf("profile with an existing session during the outage = %s", r)
	}
	if r := b.Get(app.URL + "/auth/userinfo"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("userinfo during the outage = %d, want 503", r.StatusCode)
	}

	idp.Start(t)
	eventually(t, 5*time.Second, "sign-in to work again", func() bool {
		return newcomer.StartSignIn(app, "").StatusCode == http.StatusSeeOther
	})
	if landed := newcomer.Login(app, "bob", pw); landed.StatusCode != http.StatusOK {
		t.Fatalf("login after the outage = %s", landed)
	}
}

func TestKeyRotation_BothLoginsSucceed(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	if r := testenv.NewBrowser(t).Login(app, "alice", pw); r.StatusCode != http.StatusOK {
		t.Fatalf("first login = %s", r)
	}
	oldKey := idp.SigningKeyID()
	if err := idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if idp.SigningKeyID() == oldKey {
		t.Fatal("rotation did not change the signing key")
	}
	fetches := idp.KeyFetches()
	if r := testenv.NewBrowser(t).Login(app, "bob", pw); r.StatusCode != http.StatusOK {
		t.Fatalf("login after key rotation = %s", r)
	}
	if idp.KeyFetches() == fetches {
		t.Fatal("the new key was verified without fetching keys: the test did not exercise rotation")
	}
}

func TestForgedTokensWithUnknownKeys_DoNotHammerTheProvider(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	relyingParty, err := app.Provider().RP()
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	before, start := idp.KeyFetches(), time.Now()
	for i := range 40 {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
			(&jose.SignerOptions{}).WithHeader("kid", fmt.Sprintf("forged-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		claims := fmt.Sprintf(`{"iss":%q,"aud":[%q],"sub":"x","exp":%d,"iat":%d}`,
			idp.URL, testenv.ClientID, time.Now().Add(time.Hour).Unix(), time.Now().Unix())
		jws, err := signer.Sign([]byte(claims))
		if err != nil {
			t.Fatal(err)
		}
		token, _ := jws.CompactSerialize()
		if _, err := rp.VerifyIDToken[*oidc.IDTokenClaims](context.Background(), token, relyingParty.IDTokenVerifier()); err == nil {
			t.Fatal("a token signed by an unknown key verified")
		}
	}
	// At most one refetch per 5 s (issue 15): one at once, one more for
	// each 5 s the 40 verifications took on a slow machine.
	allowed := 1 + int64(time.Since(start)/(5*time.Second))
	if got := idp.KeyFetches() - before; got > allowed {
		t.Fatalf("40 forged tokens caused %d key-set fetches, want at most %d: the refetch must be rate-limited", got, allowed)
	}
}

func TestServer_RefusesHugeHeadersAndCutsOffSlowClients(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	addr := strings.TrimPrefix(app.URL, "http://")

	req, _ := http.NewRequest(http.MethodGet, app.URL+"/", nil)
	req.Header.Set("X-Huge", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header = %d, want 431", resp.StatusCode)
	}

	// Slowloris: headers dribbled one line a second never finish.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		_, _ = bufio.NewReader(conn).ReadString('\n') // returns when the server gives up
		closed <- time.Since(start)
	}()
	_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case d := <-closed:
			if d > 8*time.Second {
				t.Fatalf("slow client held the connection for %v", d)
			}
			if r := testenv.NewBrowser(t).Get(app.URL + "/healthz"); r.StatusCode != http.StatusOK {
				t.Fatalf("after the slow client, /healthz = %d", r.StatusCode)
			}
			return
		case <-ticker.C:
			if time.Since(start) > 15*time.Second {
				t.Fatal("server never cut off a client dribbling headers")
			}
			_, _ = conn.Write([]byte("X-Slow: 1\r\n"))
		}
	}
}
