package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/sessions"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// sessionValue is the key under which every backend keeps the typed
// *Session in a gorilla session's Values.
const sessionValue = "session"

// maxCookieLen is the largest value we put in a cookie; browsers drop
// cookies over 4096 bytes (name and attributes included).
const maxCookieLen = 3800

// backend is a gorilla sessions.Store that also hands over a request's
// typed session directly.
type backend interface {
	sessions.Store
	// loadSession returns the request's session, or nil without one (or
	// when it has ended); an error is ErrUnavailable when the backend
	// cannot be reached, and means no usable session otherwise.
	loadSession(r *http.Request, name string) (*Session, error)
}

// newSession is every backend's New: loadSession's result inside a
// gorilla session.
func newSession(b backend, r *http.Request, name string) (*sessions.Session, error) {
	gsess := sessions.NewSession(b, name)
	gsess.IsNew = true
	s, err := b.loadSession(r, name)
	if s != nil {
		gsess.ID, gsess.IsNew = s.ID, false
		gsess.Values[sessionValue] = s
	}
	return gsess, err
}

// gorillaStore is the Store of every backend. It saves and deletes through
// gorilla's sessions.Store interface, and loads with loadSession: the
// gorilla session New builds (a struct, its Values map, Options) would be
// made and dropped on every protected request. Needed for the
// forward-auth budget: BenchmarkDecision_Verify (internal/forwardauth).
type gorillaStore struct {
	gs     backend
	name   string
	secure bool
	domain string
	now    func() time.Time
}

func newGorillaStore(gs backend, opts CookieOptions, now func() time.Time) *gorillaStore {
	return &gorillaStore{gs: gs, name: opts.Name(), secure: opts.Secure, domain: opts.Domain, now: now}
}

func (g *gorillaStore) Load(r *http.Request) (*Session, error) {
	s, err := g.gs.loadSession(r, g.name)
	if errors.Is(err, ErrUnavailable) {
		return nil, err
	}
	if err != nil || s == nil {
		return nil, ErrNoSession
	}
	return s, nil
}

func (g *gorillaStore) Save(w http.ResponseWriter, r *http.Request, s *Session) error {
	gsess := sessions.NewSession(g.gs, g.name)
	gsess.ID = s.ID
	gsess.IsNew = !s.stored // server-side backends: create, or update only what still exists
	gsess.Values[sessionValue] = s
	gsess.Options = g.options(max(int(s.Remaining(g.now())/time.Second), 1))
	if err := g.gs.Save(r, w, gsess); err != nil {
		if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrNoSession) || errors.Is(err, ErrUnavailable) {
			return err
		}
		return fmt.Errorf("save session: %w", err)
	}
	s.stored, s.loaded = true, s.TokenStamp()
	return nil
}

func (g *gorillaStore) Delete(w http.ResponseWriter, r *http.Request, s *Session) error {
	if s == nil {
		if _, err := r.Cookie(g.name); err != nil {
			return nil // no session cookie: nothing to end
		}
	}
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
	return &sessions.Options{Path: "/", Domain: g.domain, MaxAge: maxAge, Secure: g.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// idCookie is the cookie of a server-side backend: the session ID, sealed.
type idCookie struct {
	sealer *seal.Sealer
	now    func() time.Time
}

// id opens the request's cookie; ok is false without one or when it does
// not open. rotated: it opened only with the previous secret.
func (c idCookie) id(r *http.Request, name string) (id string, rotated, ok bool) {
	cookie, err := r.Cookie(name)
	if err != nil {
		return "", false, false
	}
	b, _, rotated, err := c.sealer.Open(name, cookie.Value, 0, c.now())
	if err != nil || len(b) == 0 {
		return "", false, false
	}
	return string(b), rotated, true
}

// set writes the cookie for gsess: its sealed ID, or a deletion cookie
// (no value) when gsess.Options.MaxAge < 0.
func (c idCookie) set(w http.ResponseWriter, gsess *sessions.Session) {
	value := ""
	if gsess.Options.MaxAge >= 0 {
		value = c.sealer.Seal(gsess.Name(), []byte(gsess.ID), c.now())
	}
	http.SetCookie(w, sessions.NewCookie(gsess.Name(), value, gsess.Options))
}

// deleting reports whether a backend's Save is a deletion, and the ID to
// delete: the session's, or (Delete(w, r, nil)) the one the cookie names.
func (c idCookie) deleting(r *http.Request, gsess *sessions.Session) (id string, ok bool) {
	if gsess.Options.MaxAge >= 0 {
		return "", false
	}
	if gsess.ID != "" {
		return gsess.ID, true
	}
	id, _, _ = c.id(r, gsess.Name())
	return id, true
}

// savedSession is the typed session a Save carries (see gorillaStore.Save).
func savedSession(gsess *sessions.Session) (*Session, error) {
	s, ok := gsess.Values[sessionValue].(*Session)
	if !ok || s.ID == "" || s.ID != gsess.ID {
		return nil, errors.New("session store: save without a session")
	}
	return s, nil
}

// encodedSession is savedSession and its JSON, for backends that store bytes.
func encodedSession(gsess *sessions.Session) (*Session, []byte, error) {
	s, err := savedSession(gsess)
	if err != nil {
		return nil, nil, err
	}
	payload, err := json.Marshal(s)
	if err != nil {
		return nil, nil, fmt.Errorf("encode session: %w", err)
	}
	return s, payload, nil
}
