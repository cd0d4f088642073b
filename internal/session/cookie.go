package session

import (
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// openedSessions is how many opened cookie values the store remembers
// (see openedCache): ~1.5 MB at most.
const openedSessions = 256

// NewCookieStore keeps the whole session, sealed, in the cookie: nothing on
// the server, any number of replicas, but a copied cookie stays valid until
// its timestamps run out (logout cannot reach it) and the tokens must fit
// in 4 KB.
func NewCookieStore(sealer *seal.Sealer, opts CookieOptions, now func() time.Time) Store {
	name := CookieName(opts.Secure)
	c := codec{sealer: sealer, now: now, compress: true}
	gs := &sessions.CookieStore{
		Codecs:  []securecookie.Codec{c},
		Options: &sessions.Options{Path: "/"},
	}
	return &gorillaStore{gs: gs, name: name, secure: opts.Secure, now: now, cookie: &c, opened: newOpenedCache(openedSessions)}
}
