package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
)

// gorillaStore turns any gorilla/sessions store that keeps the payload under
// valPayload into a typed Store.
type gorillaStore struct {
	gs     sessions.Store
	name   string
	secure bool
	now    func() time.Time
	// cookie, when set, reads sessions straight from the cookie (the
	// cookie store): gorilla's session map and a second cookie parse cost
	// more than the decryption.
	cookie *codec
	opened *openedCache // with cookie: values opened recently
}

func (g *gorillaStore) Load(r *http.Request) (*Session, error) {
	if g.cookie != nil {
		var cached *Session
		value, ok := firstCookie(r, g.name, func(v string) bool {
			cached, _ = g.opened.get(v)
			return cached != nil
		})
		switch {
		case !ok:
			return nil, ErrNoSession
		case cached != nil:
			return cached, nil
		}
		s, err := g.cookie.loadSession(g.name, value)
		if err == nil {
			g.opened.put(value, s)
		}
		return s, err
	}
	if _, ok := cookieValue(r, g.name); !ok {
		return nil, ErrNoSession // fast path: no cookie, nothing to decode
	}
	gsess, err := g.gs.New(r, g.name)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		return nil, ErrNoSession
	}
	if gsess.IsNew {
		return nil, ErrNoSession
	}
	payload, ok := gsess.Values[valPayload].([]byte)
	if !ok {
		return nil, ErrNoSession
	}
	s := new(Session)
	if err := decodeSession(payload, s); err != nil || s.ID == "" {
		return nil, ErrNoSession
	}
	if gsess.ID != "" && gsess.ID != s.ID {
		return nil, ErrNoSession // server-side record does not belong to this ID
	}
	s.Reseal, _ = gsess.Values[valReseal].(bool)
	s.stored, s.loaded = true, s.TokenStamp()
	return s, nil
}

// Stateless: the cookie store holds the whole session in the cookie.
func (g *gorillaStore) Stateless() bool { return g.cookie != nil }

func (g *gorillaStore) Save(w http.ResponseWriter, r *http.Request, s *Session) error {
	payload, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	gsess := sessions.NewSession(g.gs, g.name)
	gsess.ID = s.ID
	gsess.IsNew = !s.stored // server-side stores: create, or update only what still exists
	gsess.Values[valPayload] = payload
	gsess.Values[valSID] = s.ProviderSID
	gsess.Values[valSubject] = s.Subject
	gsess.Values[valTokens] = s.TokenStamp()
	gsess.Values[valLoaded] = s.loaded
	maxAge := int(s.Remaining(g.now()) / time.Second)
	if maxAge < 1 {
		maxAge = 1
	}
	gsess.Options = g.options(maxAge)
	if err := g.gs.Save(r, w, gsess); err != nil {
		if tooLarge(err) {
			return ErrTooLarge
		}
		return fmt.Errorf("save session: %w", err)
	}
	s.stored, s.loaded = true, s.TokenStamp()
	return nil
}

// tooLarge sees through securecookie.MultiError, which does not unwrap.
func tooLarge(err error) bool {
	var multi securecookie.MultiError
	if errors.As(err, &multi) {
		for _, e := range multi {
			if errors.Is(e, ErrTooLarge) {
				return true
			}
		}
	}
	return errors.Is(err, ErrTooLarge)
}

func (g *gorillaStore) Delete(w http.ResponseWriter, r *http.Request, s *Session) error {
	gsess := sessions.NewSession(g.gs, g.name)
	if s != nil {
		gsess.ID = s.ID
	}
	gsess.Options = g.options(-1)
	if err := g.gs.Save(r, w, gsess); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (g *gorillaStore) options(maxAge int) *sessions.Options {
	return &sessions.Options{
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   g.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
