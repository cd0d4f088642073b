package devidp

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// AppKey is an application key as ZITADEL makes one when you add a key to
// an application with the authentication method "JWT": the JSON you
// download, and the public half the provider keeps.
type AppKey struct {
	JSON      []byte // {"type":"application","keyId":…,"key":"-----BEGIN RSA PRIVATE KEY-----…","appId":…,"clientId":…}
	KeyID     string
	PublicKey *rsa.PublicKey
}

// NewApplicationKey generates a 2048-bit RSA application key for clientID.
// Register it with Client.KeyID and Client.PublicKey.
func NewApplicationKey(clientID string) (AppKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return AppKey{}, fmt.Errorf("generate application key: %w", err)
	}
	keyID, appID := numericID(), numericID()
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	data, err := json.Marshal(map[string]string{
		"type": "application", "keyId": keyID, "key": string(pemKey), "appId": appID, "clientId": clientID,
	})
	if err != nil {
		return AppKey{}, err
	}
	return AppKey{JSON: data, KeyID: keyID, PublicKey: &key.PublicKey}, nil
}

// numericID is an 18-digit ID like ZITADEL's.
func numericID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(9e17))
	if err != nil {
		panic("devidp: crypto/rand failed: " + err.Error())
	}
	return fmt.Sprint(n.Int64() + 1e17)
}

// maxAssertionLifetime is the longest client assertion the provider
// accepts. The op package checks the signature, iss = sub, aud = issuer,
// exp and an iat at most an hour old; RFC 7523 §3 lets a server be
// stricter, and this one is, so tests prove Gatehouse sends short-lived
// assertions.
const maxAssertionLifetime = 5 * time.Minute

// maxKeptAssertions bounds ClientAssertions' memory.
const maxKeptAssertions = 1000

// assertionLog remembers the client assertions the provider has seen: a
// jti is accepted once (RFC 7523 §3's replay protection, optional for
// servers, enforced here so tests prove every request gets a fresh one).
type assertionLog struct {
	mu   sync.Mutex
	seen map[string]time.Time // jti → exp, pruned once expired
	all  []string
}

// checkAssertions refuses a form POST whose client_assertion was seen
// before, has no jti, or lives longer than maxAssertionLifetime; the op
// package checks everything else (signature with the client's key, kid,
// iss, sub, aud, exp, iat) after it.
func (p *Provider) checkAssertions(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Body == nil {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		if a := form.Get("client_assertion"); a != "" {
			if reason := p.assertions.admit(a, time.Now()); reason != "" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": reason})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (l *assertionLog) admit(assertion string, now time.Time) string {
	var claims struct {
		JTI string  `json:"jti"`
		IAT float64 `json:"iat"`
		EXP float64 `json:"exp"`
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "client assertion is not a JWS"
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &claims) != nil {
		return "client assertion payload is not JSON"
	}
	if claims.JTI == "" {
		return "client assertion has no jti"
	}
	if time.Duration(claims.EXP-claims.IAT)*time.Second > maxAssertionLifetime {
		return "client assertion lives longer than " + maxAssertionLifetime.String()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) >= maxKeptAssertions { // a long -dev session stays small
		l.all = append(l.all[:0], l.all[maxKeptAssertions/2:]...)
	}
	l.all = append(l.all, assertion)
	if _, replayed := l.seen[claims.JTI]; replayed {
		return "client assertion replayed (jti seen before)"
	}
	for jti, exp := range l.seen {
		if now.After(exp) {
			delete(l.seen, jti)
		}
	}
	l.seen[claims.JTI] = time.Unix(int64(claims.EXP), 0)
	return ""
}

// ClientAssertions returns the client assertions the provider received
// (the last 500 to 1000), in order (tests check their claims and that none reaches a log).
func (p *Provider) ClientAssertions() []string {
	p.assertions.mu.Lock()
	defer p.assertions.mu.Unlock()
	return append([]string(nil), p.assertions.all...)
}
