package clientauth_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse/gatehouse/internal/clientauth"
	"github.com/gatehouse/gatehouse/internal/devidp"
)

const clientID = "312345678901234567"

func appKey(t testing.TB) devidp.AppKey {
	t.Helper()
	k, err := devidp.NewApplicationKey(clientID)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keyJSON is ZITADEL's key file around pemKey.
func keyJSON(fields map[string]any) []byte {
	b, _ := json.Marshal(fields)
	return b
}

func pemOf(t testing.TB, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestParseKey_AcceptsZitadelApplicationKeys(t *testing.T) {
	t.Parallel()
	k := appKey(t)
	key, err := clientauth.ParseKey(k.JSON)
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	if key.KeyID != k.KeyID || key.ClientID != clientID || key.AppID == "" {
		t.Errorf("key = %v (app %q)", key, key.AppID)
	}
	// The same key as PKCS#8 ("BEGIN PRIVATE KEY"), as other tools write it.
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	if _, err := clientauth.ParseKey(keyJSON(map[string]any{"type": "application", "keyId": "1", "clientId": clientID,
		"key": pemOf(t, "PRIVATE KEY", der)})); err != nil {
		t.Errorf("PKCS#8 RSA key: %v", err)
	}
}

func TestParseKey_RefusesEachBadKeyWithOneLineAndNoKeyMaterial(t *testing.T) {
	t.Parallel()
	good := appKey(t)
	var fields map[string]any
	if err := json.Unmarshal(good.JSON, &fields); err != nil {
		t.Fatal(err)
	}
	goodPEM := fields["key"].(string)
	with := func(k string, v any) []byte {
		m := map[string]any{}
		for kk, vv := range fields {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return keyJSON(m)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	ec8DER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	pubDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	// A key file whose PEM is cut short, and one whose JSON breaks inside the key.
	cut := goodPEM[:len(goodPEM)/2]
	broken := bytes.Replace(good.JSON, []byte(`"key":"`), []byte(`"key":`), 1)

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "is not valid JSON"},
		{"not JSON", []byte("-----BEGIN RSA PRIVATE KEY-----\nMIIEow..."), "is not valid JSON"},
		{"JSON breaks inside the key", broken, "is not valid JSON"},
		{"JSON array", []byte(`["application"]`), "is not a JSON object"},
		{"key not a string", with("key", 42), `field "key" has the wrong type`},
		{"service-account key", keyJSON(map[string]any{"type": "serviceaccount", "keyId": "1", "key": goodPEM, "userId": "9"}), "is a service-account key"},
		{"other type", with("type", "user"), `has type "user"`},
		{"no keyId", with("keyId", nil), "has no keyId"},
		{"no clientId", with("clientId", nil), "has no clientId"},
		{"no key", with("key", nil), "has no key"},
		{"not PEM", with("key", "MIIEowIBAAKCAQEA"), "is not a PEM block"},
		{"PEM cut short", with("key", cut), "is not a PEM block"},
		{"garbage in PEM", with("key", pemOf(t, "RSA PRIVATE KEY", []byte("not a key at all"))), "is neither a PKCS#1 nor a PKCS#8"},
		{"public key", with("key", pemOf(t, "PUBLIC KEY", pubDER)), "is neither a PKCS#1 nor a PKCS#8"},
		{"EC key (SEC 1)", with("key", pemOf(t, "EC PRIVATE KEY", ecDER)), "is an ECDSA key"},
		{"EC key (PKCS#8)", with("key", pemOf(t, "PRIVATE KEY", ec8DER)), "is an ECDSA key"},
		{"Ed25519 key", with("key", pemOf(t, "PRIVATE KEY", edDER)), "is an Ed25519 key"},
		{"RSA 1024", with("key", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small))), "is a 1024-bit RSA key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := clientauth.ParseKey(tc.data)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want it to say %q", msg, tc.want)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error spans lines: %q", msg)
			}
			leaks(t, msg, string(tc.data))
		})
	}
}

// leaks fails if msg repeats 12 or more consecutive base64 characters of
// the data (the PEM body of a key, JSON-escaped or not).
func leaks(t *testing.T, msg, data string) {
	t.Helper()
	for _, line := range strings.FieldsFunc(strings.ReplaceAll(data, `\n`, "\n"), func(r rune) bool {
		return r == '\n' || r == '"'
	}) {
		if len(line) < 40 || strings.ContainsAny(line, " -:,{}") {
			continue // not a line of base64 key material
		}
		for i := 0; i+12 <= len(line); i++ {
			if chunk := line[i : i+12]; strings.Contains(msg, chunk) {
				t.Fatalf("error %q repeats key material %q", msg, chunk)
			}
		}
	}
}

func TestReadKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "key.json")
	if err := os.WriteFile(good, appKey(t).JSON, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := clientauth.ReadKeyFile(good); err != nil {
		t.Fatalf("good file: %v", err)
	}
	if _, err := clientauth.ReadKeyFile(filepath.Join(dir, "missing.json")); err == nil ||
		err.Error() != "cannot read "+filepath.Join(dir, "missing.json")+": no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := clientauth.ReadKeyFile(big); err == nil || !strings.Contains(err.Error(), "larger than 64 KiB") {
		t.Errorf("1 MiB file: %v", err)
	}
}

func TestAssertion_ClaimsHeaderAndSignature(t *testing.T) {
	t.Parallel()
	k := appKey(t)
	key, err := clientauth.ParseKey(k.JSON)
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://my-instance.zitadel.cloud"
	seen := map[string]bool{}
	for range 3 {
		a, err := key.Assertion(issuer)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSignedCompact(a, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		if h := jws.Signatures[0].Header; h.KeyID != k.KeyID || h.Algorithm != "RS256" {
			t.Errorf("header kid %q alg %q, want %q RS256", h.KeyID, h.Algorithm, k.KeyID)
		}
		payload, err := jws.Verify(k.PublicKey)
		if err != nil {
			t.Fatalf("signature does not verify with the application's public key: %v", err)
		}
		var c oidc.JWTTokenRequest
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatal(err)
		}
		if c.Issuer != clientID || c.Subject != clientID || len(c.Audience) != 1 || c.Audience[0] != issuer {
			t.Errorf("iss %q sub %q aud %v", c.Issuer, c.Subject, c.Audience)
		}
		iat, exp := c.IssuedAt.AsTime(), c.ExpiresAt.AsTime()
		if d := time.Since(iat); d < -2*time.Second || d > 5*time.Second {
			t.Errorf("iat %v is not now", iat)
		}
		if exp.Sub(iat) != clientauth.AssertionLifetime || clientauth.AssertionLifetime > 5*time.Minute {
			t.Errorf("lifetime %v", exp.Sub(iat))
		}
		if c.JWTID == "" || seen[c.JWTID] {
			t.Errorf("jti %q empty or repeated", c.JWTID)
		}
		seen[c.JWTID] = true
	}
}

func TestKey_NeverPrintsItsPrivateHalf(t *testing.T) {
	t.Parallel()
	k := appKey(t)
	key, err := clientauth.ParseKey(k.JSON)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "key", key, "cfg", struct{ Key *clientauth.Key }{key})
	out := fmt.Sprintf("%v %+v %#v %s %v", key, key, key, key, struct{ Key *clientauth.Key }{key}) + logged.String()
	if !strings.Contains(out, k.KeyID) {
		t.Fatalf("the key ID should be shown: %s", out)
	}
	var fields map[string]string
	_ = json.Unmarshal(k.JSON, &fields)
	block, _ := pem.Decode([]byte(fields["key"]))
	priv, _ := x509.ParsePKCS1PrivateKey(block.Bytes)
	for _, secret := range []string{
		base64.StdEncoding.EncodeToString(block.Bytes)[100:140], priv.D.String()[:40], priv.D.Text(16)[:40],
		priv.Primes[0].String()[:40], "PRIVATE",
	} {
		if strings.Contains(out, secret) {
			t.Fatalf("printed key material: %s", out)
		}
	}
}

// recorder answers 200 and keeps each request's form and Authorization header.
type recorder struct {
	mu   sync.Mutex
	got  []url.Values
	auth []string
	path []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	form, _ := url.ParseQuery(string(body))
	r.mu.Lock()
	r.got = append(r.got, form)
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.path = append(r.path, req.URL.Path)
	r.mu.Unlock()
	_, _ = w.Write([]byte(`{}`))
}

func TestTransport_AuthenticatesOnlyTheNamedEndpoints(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	key, err := clientauth.ParseKey(appKey(t).JSON)
	if err != nil {
		t.Fatal(err)
	}
	tr := clientauth.NewTransport(nil, key, "https://issuer.example")
	client := &http.Client{Transport: tr}
	post := func(path string, form url.Values, basic bool) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth("id", "secret")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	code := url.Values{"grant_type": {"authorization_code"}, "code": {"c"}, "client_id": {clientID}, "client_secret": {""}}

	post("/oauth/token", code, false) // before discovery: nothing is authenticated
	tr.Authenticate(srv.URL+"/oauth/token", srv.URL+"/oauth/introspect", "")
	post("/oauth/token", code, false)
	post("/oauth/introspect", url.Values{"token": {"t"}}, false)
	post("/oauth/userinfo", url.Values{"x": {"y"}}, false)
	post("/oauth/token", code, true)
	post("/oauth/token", url.Values{"client_assertion": {"mine"}, "client_assertion_type": {"x"}}, false)
	if resp, err := client.Get(srv.URL + "/oauth/token"); err == nil {
		resp.Body.Close()
	}

	type want struct {
		assertion bool
		keep      string
	}
	wants := []want{{false, "code"}, {true, "code"}, {true, "token"}, {false, "x"}, {false, "code"}, {false, "client_assertion"}, {false, ""}}
	if len(rec.got) != len(wants) {
		t.Fatalf("%d requests arrived, want %d", len(rec.got), len(wants))
	}
	for i, w := range wants {
		form := rec.got[i]
		has := form.Get("client_assertion_type") == oidc.ClientAssertionTypeJWTAssertion && strings.Count(form.Get("client_assertion"), ".") == 2
		if has != w.assertion {
			t.Errorf("request %d (%s): assertion added = %v, want %v", i, rec.path[i], has, w.assertion)
		}
		if w.keep != "" && !form.Has(w.keep) {
			t.Errorf("request %d lost its %s field: %v", i, w.keep, form)
		}
		if has && form.Has("client_secret") {
			t.Errorf("request %d sends a client_secret next to the assertion", i)
		}
	}
	if rec.got[5].Get("client_assertion") != "mine" {
		t.Error("an assertion the caller made was replaced")
	}
	if rec.auth[4] == "" {
		t.Error("Basic authentication was dropped")
	}
}
