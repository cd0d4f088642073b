package auth

import (
	"bytes"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/internal/claims"
	"github.com/gatehouse/gatehouse/internal/session"
)

// Identity is who a decision found: what rules are checked against and
// what the upstream is told. A session's comes from its claims
// (claims.SessionIdentity), a bearer token's from the token's
// (internal/bearer, claims.IdentityOf), their roles from the same claim
// (claims.RolesClaim). Shared between requests: never change one.
type Identity = claims.Identity

// identityCache keeps each session's Identity, so the decision does not
// decode the ID token and userinfo (base64 and JSON into maps) on every
// request. Needed for the decision's budget: BenchmarkDecision_Verify
// (internal/forwardauth).
//
// An entry is keyed by session ID and used only while the session still
// carries the very claims it was read from: the same ID token (compared
// by its signature's last bytes and its length: sessions come sealed from
// the store, so tokens are the provider's, and two signatures of distinct
// tokens do not share a tail) and the same userinfo. A refresh that
// brings a new ID token therefore reads the claims again. A random entry
// makes room when the cache is full.
//
// Role sets are interned (claims.RoleSets): sessions whose users hold the
// same grants share one copy.
type identityCache struct {
	projectID string // ZITADEL_PROJECT_ID: whose roles count (claims.SessionRoles)
	mu        sync.RWMutex
	max       int
	m         map[string]*identityEntry
	roles     *claims.RoleSets
}

type identityEntry struct {
	tokenLen  int
	tokenTail string
	userinfo  []byte
	rolesRead bool // RolesAt was set: roles come from userinfo alone (claims.SessionRoles)
	id        *Identity
}

// tokenTailLen covers 258 bits of an RS256 or ES256 signature's base64.
const tokenTailLen = 43

func newIdentityCache(max int, projectID string) *identityCache {
	return &identityCache{projectID: projectID, max: max, m: make(map[string]*identityEntry), roles: claims.NewRoleSets(maxRoleSets)}
}

// maxRoleSets bounds the interned role sets; past it, identities keep
// their own.
const maxRoleSets = 1024

func tail(s string) string {
	if len(s) > tokenTailLen {
		return s[len(s)-tokenTailLen:]
	}
	return s
}

// of returns s's Identity.
func (c *identityCache) of(s *session.Session) *Identity {
	c.mu.RLock()
	e := c.m[s.ID]
	c.mu.RUnlock()
	if e != nil && e.tokenLen == len(s.IDToken) && e.tokenTail == tail(s.IDToken) && bytes.Equal(e.userinfo, s.Userinfo) && e.rolesRead == (s.RolesAt != 0) {
		return e.id
	}
	id := claims.SessionIdentity(s, c.projectID)
	c.roles.Share(id)
	e = &identityEntry{tokenLen: len(s.IDToken), tokenTail: strings.Clone(tail(s.IDToken)), userinfo: bytes.Clone(s.Userinfo), rolesRead: s.RolesAt != 0, id: id}
	c.mu.Lock()
	if _, ok := c.m[s.ID]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[s.ID] = e
	c.mu.Unlock()
	return id
}
