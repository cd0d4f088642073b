// Package clientauth authenticates Gatehouse to ZITADEL with a key instead
// of a client secret: OAuth 2.0 private_key_jwt (RFC 7523 §2.2, OpenID
// Connect Core §9), with the application key JSON ZITADEL lets you
// download for an application whose authentication method is "JWT".
//
// ParseKey reads that JSON; Key.Assertion signs one client assertion; and
// Transport adds a fresh assertion to every request to the provider's
// token, introspection and revocation endpoints, so that each caller (the
// code exchange, refresh, introspection) is authenticated the same way
// without knowing how.
package clientauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/client"
)

// AssertionLifetime is how long a client assertion is valid. Each request
// gets a fresh one, so it only has to outlive one round trip plus clock
// skew; a stolen assertion is worth no more than that.
const AssertionLifetime = time.Minute

// maxKeyFileSize bounds what is read from ZITADEL_KEY_FILE: ZITADEL's key
// files are about 1.8 KB (a 2048-bit RSA key); a path pointing at
// something else should fail fast, not be read whole.
const maxKeyFileSize = 64 << 10

// minRSABits is the smallest RSA key accepted. ZITADEL generates 2048-bit keys.
const minRSABits = 2048

// Key is a ZITADEL application key, ready to sign client assertions. Its
// private half is unexported and never printed: String, GoString and
// LogValue show only the key and client IDs.
type Key struct {
	KeyID    string // keyId: the kid of every assertion
	ClientID string // clientId: iss and sub of every assertion
	AppID    string // appId, for messages
	signer   jose.Signer
}

// keyFile is ZITADEL's application key JSON.
type keyFile struct {
	Type     string `json:"type"`
	KeyID    string `json:"keyId"`
	Key      string `json:"key"`
	ClientID string `json:"clientId"`
	AppID    string `json:"appId"`
	UserID   string `json:"userId"` // only in service-account keys
}

// ReadKeyFile reads and parses a key file. Errors name the problem, never
// the file's content.
func ReadKeyFile(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, pathless(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, pathless(err))
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%s is larger than %d KiB: not a ZITADEL application key file (about 2 KB)", path, maxKeyFileSize>>10)
	}
	return ParseKey(data)
}

// ParseKey parses ZITADEL's application key JSON:
//
//	{"type":"application","keyId":"…","key":"-----BEGIN RSA PRIVATE KEY-----…","clientId":"…","appId":"…"}
//
// It accepts RSA keys of at least 2048 bits in PKCS#1 or PKCS#8 PEM.
// Every error is one line that names what is wrong and quotes nothing of
// the key.
func ParseKey(data []byte) (*Key, error) {
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("is not valid JSON (syntax error at byte %d); expected ZITADEL's application key file {\"type\":\"application\",\"keyId\":…,\"key\":…,\"clientId\":…}", syn.Offset)
		case errors.As(err, &typ) && typ.Field != "":
			return nil, fmt.Errorf("field %q has the wrong type (want a string); expected ZITADEL's application key file", typ.Field)
		default:
			return nil, errors.New("is not a JSON object; expected ZITADEL's application key file {\"type\":\"application\",\"keyId\":…,\"key\":…,\"clientId\":…}")
		}
	}
	switch {
	case kf.Type == "serviceaccount" || (kf.Type == "" && kf.UserID != ""):
		return nil, errors.New(`is a service-account key (type "serviceaccount"); Gatehouse needs the key of its application (ZITADEL console: your project → the application → Keys)`)
	case kf.Type != "application":
		return nil, fmt.Errorf(`has type %q; want "application" (the key of the application, ZITADEL console: your project → the application → Keys)`, truncate(kf.Type, 40))
	case kf.KeyID == "":
		return nil, errors.New("has no keyId")
	case kf.ClientID == "":
		return nil, errors.New("has no clientId")
	case kf.Key == "":
		return nil, errors.New("has no key (the PEM private key)")
	}
	priv, err := parsePrivateKey([]byte(kf.Key))
	if err != nil {
		return nil, fmt.Errorf("key (keyId %s): %w", kf.KeyID, err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: kf.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("key (keyId %s): cannot sign with it: %w", kf.KeyID, err)
	}
	return &Key{KeyID: kf.KeyID, ClientID: kf.ClientID, AppID: kf.AppID, signer: signer}, nil
}

// parsePrivateKey reads a PEM RSA private key (PKCS#1 or PKCS#8). Its
// errors are Gatehouse's own words: the standard library's are safe too,
// but say less.
func parsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("is not a PEM block (the key file's \"key\" is the private key in PEM)")
	}
	var key any
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		key = k
	} else if _, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return nil, errors.New("is an ECDSA key; ZITADEL application keys are RSA")
	} else {
		return nil, fmt.Errorf("PEM block %q is neither a PKCS#1 nor a PKCS#8 private key", truncate(block.Type, 40))
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("is a %d-bit RSA key; at least %d bits are needed", bits, minRSABits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		return nil, errors.New("is an ECDSA key; ZITADEL application keys are RSA")
	case ed25519.PrivateKey:
		return nil, errors.New("is an Ed25519 key; ZITADEL application keys are RSA")
	default:
		return nil, fmt.Errorf("is a %T key; ZITADEL application keys are RSA", key)
	}
}

// pathless drops the operation and path an *os.PathError repeats.
func pathless(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Assertion signs a client assertion for audience (the issuer): iss and
// sub the client ID, a fresh jti, issued now, valid AssertionLifetime, kid
// the key ID.
func (k *Key) Assertion(audience string) (string, error) {
	a, err := client.SignedJWTProfileAssertion(k.ClientID, []string{audience}, AssertionLifetime, k.signer)
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return a, nil
}

// String describes the key without its private part.
func (k *Key) String() string {
	if k == nil {
		return "<no key>"
	}
	return fmt.Sprintf("ZITADEL application key %s of client %s", k.KeyID, k.ClientID)
}

// GoString keeps %#v from printing the signer (and the private key in it).
func (k *Key) GoString() string { return k.String() }

// LogValue keeps slog from printing the signer.
func (k *Key) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("")
	}
	return slog.GroupValue(slog.String("key_id", k.KeyID), slog.String("client_id", k.ClientID))
}
