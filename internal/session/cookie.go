package session

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gorilla/sessions"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// NewCookieStore keeps the whole session, sealed, in the cookie: nothing on
// the server, any number of replicas, but a copied cookie stays valid until
// its timestamps run out (logout cannot reach it) and the tokens must fit
// in 4 KB.
func NewCookieStore(sealer *seal.Sealer, opts CookieOptions, now func() time.Time) Store {
	return newGorillaStore(&cookieBackend{sealer: sealer, now: now, opened: newOpenedCache(openedSessions)}, opts, now)
}

// cookieBackend is the gorilla/sessions store whose cookie is the session:
// JSON, deflated (ZITADEL's tokens come close to the 4 KB limit), sealed
// with AES-GCM and one base64 pass (securecookie's format grows a value
// ~1.8x, this one ~1.35x).
type cookieBackend struct {
	sealer *seal.Sealer
	now    func() time.Time
	opened *openedCache
}

func (c *cookieBackend) Get(r *http.Request, name string) (*sessions.Session, error) {
	return c.New(r, name)
}

func (c *cookieBackend) New(r *http.Request, name string) (*sessions.Session, error) {
	return newSession(c, r, name)
}

func (c *cookieBackend) loadSession(r *http.Request, name string) (*Session, error) {
	var s *Session
	value, ok := cookieValue(r, name, func(v string) bool {
		s, _ = c.opened.get(v)
		return s != nil
	})
	if !ok || s != nil {
		return s, nil
	}
	s, err := c.open(name, value)
	if err != nil {
		return nil, err
	}
	c.opened.put(value, s)
	return s, nil
}

func (c *cookieBackend) open(name, value string) (*Session, error) {
	payload, _, rotated, err := c.sealer.Open(name, value, 0, c.now())
	if err != nil {
		return nil, ErrNoSession
	}
	if payload, err = inflate(payload); err != nil {
		return nil, ErrNoSession
	}
	s := new(Session)
	if err := json.Unmarshal(payload, s); err != nil || s.ID == "" {
		return nil, ErrNoSession
	}
	s.Reseal = rotated
	return s, nil
}

func (c *cookieBackend) Save(_ *http.Request, w http.ResponseWriter, gsess *sessions.Session) error {
	if gsess.Options.MaxAge < 0 {
		http.SetCookie(w, sessions.NewCookie(gsess.Name(), "", gsess.Options)) // browsers drop it, its value is never read
		return nil
	}
	_, payload, err := encodedSession(gsess)
	if err != nil {
		return err
	}
	value := c.sealer.Seal(gsess.Name(), deflate(payload), c.now())
	if len(gsess.Name())+len(value) > maxCookieLen {
		return ErrTooLarge
	}
	http.SetCookie(w, sessions.NewCookie(gsess.Name(), value, gsess.Options))
	return nil
}
