package session

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// Keys in a gorilla session's Values.
const (
	valPayload = "s"   // []byte: the JSON-encoded Session
	valReseal  = "rot" // bool: decoded with the previous secret
	valSID     = "sid" // string: provider session ID, for server-side indexes
	valSubject = "sub" // string: subject, for server-side indexes
	valTokens  = "tok" // string: TokenStamp of the tokens being saved
	valLoaded  = "ld"  // string: TokenStamp of the tokens the session was loaded with
)

// maxCookieLen is the largest value we put in a cookie; browsers drop
// cookies over 4096 bytes (name and attributes included).
const maxCookieLen = 3800

// codec adapts a seal.Sealer to securecookie.Codec, the interface gorilla
// stores encode cookies with. It replaces securecookie's own format (CTR +
// HMAC, base64 twice, ~1.8x growth) with AES-GCM and one base64 (~1.35x),
// which leaves room for ZITADEL's tokens in a 4 KB cookie.
//
// The value is either a session's Values map (cookie store: the payload is
// the whole session) or a string (server-side stores: the payload is the ID).
type codec struct {
	sealer   *seal.Sealer
	now      func() time.Time
	compress bool // cookie store: a 2.8 KB ZITADEL session deflates to ~2 KB
}

func (c codec) Encode(name string, value any) (string, error) {
	var payload []byte
	switch v := value.(type) {
	case map[any]any:
		payload, _ = v[valPayload].([]byte)
		if len(payload) == 0 {
			return "", nil // a deletion cookie: browsers drop it, its value is never read
		}
		if c.compress {
			payload = deflate(payload)
		}
	case string:
		payload = []byte(v)
	case SealedID:
		payload = []byte(v.ID)
	default:
		return "", fmt.Errorf("session codec: cannot encode %T", value)
	}
	out := c.sealer.Seal(name, payload, c.now())
	if len(name)+len(out) > maxCookieLen {
		return "", ErrTooLarge
	}
	return out, nil
}

func (c codec) Decode(name, value string, dst any) error {
	payload, _, rotated, err := c.sealer.Open(name, value, 0, c.now())
	if err != nil {
		return err
	}
	switch d := dst.(type) {
	case *map[any]any:
		if *d == nil {
			*d = make(map[any]any, 2)
		}
		if c.compress {
			if payload, err = inflate(payload); err != nil {
				return err
			}
		}
		(*d)[valPayload] = payload
		if rotated {
			(*d)[valReseal] = true
		}
	case *SealedID:
		d.ID = string(payload)
		d.Rotated = rotated
	default:
		return fmt.Errorf("session codec: cannot decode into %T", dst)
	}
	return nil
}

// SealedID is what a server-side store's cookie holds: the session ID, and
// whether it opened only with the previous secret (then the cookie is
// sealed again on the next save).
type SealedID struct {
	ID      string
	Rotated bool
}

// loadSession opens a cookie store's cookie value into a Session: what
// gorilla's CookieStore.New and Load do together, without the session map.
func (c codec) loadSession(name, value string) (*Session, error) {
	payload, _, rotated, err := c.sealer.Open(name, value, 0, c.now())
	if err != nil {
		return nil, ErrNoSession
	}
	s := new(Session)
	if c.compress {
		err = withInflated(payload, func(p []byte) error { return decodeSession(p, s) })
	} else {
		err = decodeSession(payload, s)
	}
	if err != nil || s.ID == "" {
		return nil, ErrNoSession
	}
	s.Reseal = rotated
	return s, nil
}

// readSealedID opens the session ID a server-side store's cookie carries.
// ok is false without a cookie (err nil) or with one that does not open.
func readSealedID(r *http.Request, name string, c securecookie.Codec) (id SealedID, ok bool, err error) {
	cookie, err := r.Cookie(name)
	if err != nil {
		return id, false, nil
	}
	if err := securecookie.DecodeMulti(name, cookie.Value, &id, c); err != nil {
		return id, false, err
	}
	return id, true, nil
}
