package web

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/templates"
)

// account is what the pages show of a signed-in user that depends only on
// the session's tokens: decoding them (ProfileOf), sorting the claims into
// tables and indenting their JSON were two thirds of the profile page's
// CPU, and the landing page decoded the ID token for the user's name alone.
// It is computed once per session content and shared, read-only, by the
// requests that follow.
type account struct {
	prof     auth.Profile
	userName string
	profile  templates.Profile // without the fields that depend on the time or the request
	expires  string            // the end of the session, as a date

	mu       sync.Mutex
	pageKey  string // what the last rendered profile page was rendered for
	lastPage []byte // read-only once stored
}

// page is the profile page last rendered for key, if it was.
func (a *account) page(key string) ([]byte, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastPage, a.lastPage != nil && a.pageKey == key
}

// keepPage remembers the profile page rendered for key (one per account:
// the key changes once a minute).
func (a *account) keepPage(key string, page []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pageKey, a.lastPage = key, page
}

// accountKey is everything account is computed from. The tokens are part
// of it, so a refreshed session (new ID token, new userinfo) is a new key.
type accountKey struct {
	subject, idToken, userinfo string
	created, expiresAt         int64
}

// accounts keeps at most max accounts (~25 KB each with a rendered page); a random one makes room.
type accounts struct {
	mu  sync.RWMutex
	max int
	m   map[accountKey]*account
}

func newAccounts(max int) *accounts {
	return &accounts{max: max, m: make(map[accountKey]*account, max)}
}

func (c *accounts) of(s *session.Session) *account {
	k := accountKey{subject: s.Subject, idToken: s.IDToken, userinfo: string(s.Userinfo), created: s.CreatedAt, expiresAt: s.ExpiresAt}
	c.mu.RLock()
	a, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return a
	}
	a = newAccount(s)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = a
	return a
}

func newAccount(s *session.Session) *account {
	prof := auth.ProfileOf(s)
	raw, err := json.MarshalIndent(prof.Claims, "", "  ")
	if err != nil {
		raw = []byte("{}")
	}
	a := &account{prof: prof, userName: displayName(prof), expires: prof.ExpiresAt.UTC().Format("2 Jan 2006, 15:04 MST")}
	a.profile = templates.Profile{
		Subject:    prof.Subject,
		Name:       prof.Name,
		Email:      prof.Email,
		Username:   prof.Username,
		Org:        templates.Org{Name: prof.Org.Name, Domain: prof.Org.Domain},
		Roles:      roles(prof.Roles),
		Initials:   initials(prof),
		ExpiresISO: prof.ExpiresAt.UTC().Format(time.RFC3339),
		SinceISO:   prof.CreatedAt.UTC().Format(time.RFC3339),
		SinceText:  prof.CreatedAt.UTC().Format("2 Jan 2006, 15:04 MST"),
		Groups:     claimGroups(prof.Claims),
		RawJSON:    string(raw),
	}
	if len(prof.Metadata) > 0 {
		a.profile.Metadata = make([]templates.Metadata, len(prof.Metadata))
		for i, m := range prof.Metadata {
			a.profile.Metadata[i] = templates.Metadata(m)
		}
	}
	return a
}
