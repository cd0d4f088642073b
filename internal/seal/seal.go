// Package seal encrypts and authenticates small values (cookies) with
// AES-256-GCM under keys derived from the operator's secret with HKDF, one
// key per purpose, and opens values sealed under the previous secret so that
// the secret can be rotated without logging everybody out.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// ErrInvalid means the value was not sealed by us under this purpose and
// name (forged, tampered, truncated, or sealed for another cookie).
var ErrInvalid = errors.New("sealed value is invalid")

// ErrExpired means the value is authentic but older than its allowed age.
var ErrExpired = errors.New("sealed value has expired")

const (
	version   = 1
	nonceSize = 12
	stampSize = 8
)

// Sealer seals with the current key and opens with the current or the
// previous one.
type Sealer struct {
	keys []cipher.AEAD // [0] current, [1] previous (optional)
}

// New derives the purpose's keys from secret (and previous, if not empty).
// Different purposes yield unrelated keys, so a value sealed as a flow cookie
// can never be replayed as a session cookie.
func New(secret, previous, purpose string) (*Sealer, error) {
	s := &Sealer{}
	for _, sec := range []string{secret, previous} {
		if sec == "" {
			continue
		}
		key, err := hkdf.Key(sha256.New, []byte(sec), []byte("gatehouse"), "gatehouse/"+purpose+"/v1", 32)
		if err != nil {
			return nil, fmt.Errorf("derive %s key: %w", purpose, err)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("new cipher: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("new gcm: %w", err)
		}
		s.keys = append(s.keys, aead)
	}
	if len(s.keys) == 0 {
		return nil, errors.New("seal: empty secret")
	}
	return s, nil
}

// Seal returns a URL-safe string carrying plaintext and the time it was
// sealed. name is bound as additional data: the value opens only under the
// same name.
func (s *Sealer) Seal(name string, plaintext []byte, now time.Time) string {
	return base64.RawURLEncoding.EncodeToString(s.SealBytes(name, plaintext, now))
}

// SealBytes is Seal without the text encoding, for values kept server-side
// (a Redis record): a third smaller, and without a cookie's size limit.
func (s *Sealer) SealBytes(name string, plaintext []byte, now time.Time) []byte {
	aead := s.keys[0]
	buf := make([]byte, 1+nonceSize, 1+nonceSize+stampSize+len(plaintext)+aead.Overhead())
	buf[0] = version
	if _, err := rand.Read(buf[1 : 1+nonceSize]); err != nil {
		panic("seal: crypto/rand failed: " + err.Error()) // cannot happen on supported platforms
	}
	msg := make([]byte, stampSize, stampSize+len(plaintext))
	binary.BigEndian.PutUint64(msg, uint64(now.Unix()))
	msg = append(msg, plaintext...)
	return aead.Seal(buf, buf[1:1+nonceSize], msg, []byte(name))
}

// Open checks and decrypts value. maxAge 0 means no age limit here (the
// caller enforces its own expiry). rotated reports that the value was sealed
// under the previous secret and should be sealed again.
func (s *Sealer) Open(name, value string, maxAge time.Duration, now time.Time) (plaintext []byte, sealedAt time.Time, rotated bool, err error) {
	if len(value) > 8192 {
		return nil, time.Time{}, false, ErrInvalid
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(value) // one encoding per sealed value: no other spelling of it opens
	if err != nil {
		return nil, time.Time{}, false, ErrInvalid
	}
	return s.OpenBytes(name, raw, maxAge, now)
}

// OpenBytes opens what SealBytes sealed. It does not retain raw.
func (s *Sealer) OpenBytes(name string, raw []byte, maxAge time.Duration, now time.Time) (plaintext []byte, sealedAt time.Time, rotated bool, err error) {
	if len(raw) < 1+nonceSize+stampSize || raw[0] != version {
		return nil, time.Time{}, false, ErrInvalid
	}
	nonce, ct := raw[1:1+nonceSize], raw[1+nonceSize:]
	for i, aead := range s.keys {
		msg, err := aead.Open(nil, nonce, ct, []byte(name))
		if err != nil || len(msg) < stampSize {
			continue
		}
		sealedAt = time.Unix(int64(binary.BigEndian.Uint64(msg)), 0)
		if maxAge > 0 && now.Sub(sealedAt) > maxAge {
			return nil, sealedAt, false, ErrExpired
		}
		return msg[stampSize:], sealedAt, i > 0, nil
	}
	return nil, time.Time{}, false, ErrInvalid
}
