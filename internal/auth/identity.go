package auth

import (
	"bytes"
	"slices"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/internal/claims"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/session"
)

// Identity is who a decision found: what rules are checked against and
// what the upstream is told. It comes from the session's claims; it does
// not depend on the session type, so a credential that is not a session
// (a bearer token, internal/bearer) yields the same shape. It is shared
// between requests: never change one.
type Identity struct {
	Subject           string
	Email             string
	PreferredUsername string
	// OrgID is the user's own organisation
	// (urn:zitadel:iam:user:resourceowner:id), "" when not granted.
	OrgID string
	// Roles are the project roles with the organisations that granted
	// them (claims.SessionRoles); RoleNames their names, sorted.
	Roles     forward.Roles
	RoleNames []string
}

// Subject is what forward-auth rules are checked against.
func (id *Identity) subject() forward.Subject {
	return forward.Subject{Roles: id.Roles, OrgID: id.OrgID}
}

// identityOf reads s's claims (ID token and userinfo) into an Identity,
// with projectID's roles (claims.SessionRoles).
func identityOf(s *session.Session, projectID string) *Identity {
	c := claims.Merged(s)
	str := func(k string) string { v, _ := c[k].(string); return v }
	roles := claims.SessionRoles(s, projectID)
	return &Identity{
		Subject:           s.Subject,
		Email:             str("email"),
		PreferredUsername: str("preferred_username"),
		OrgID:             claims.OrgID(c),
		Roles:             roles,
		RoleNames:         roles.Names(),
	}
}

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
// Role sets are interned: sessions whose users hold the same grants (most
// users of an organisation do) share one map instead of a copy each, which
// is most of an entry's memory (the forward-auth memory budget,
// cmd/gatehouse-load: decisions over many sessions).
type identityCache struct {
	projectID string // whose roles count (claims.SessionRoles)
	mu        sync.RWMutex
	max       int
	m         map[string]*identityEntry
	roles     map[string]*Identity // role set key → the first identity with it (its Roles, RoleNames)
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
	return &identityCache{projectID: projectID, max: max, m: make(map[string]*identityEntry), roles: make(map[string]*Identity)}
}

// maxRoleSets bounds the interned role sets; past it, identities keep
// their own.
const maxRoleSets = 1024

// roleSetKey is a canonical text of roles: names sorted, each with its
// organisation IDs sorted.
func roleSetKey(roles forward.Roles, names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('=')
		orgs := make([]string, 0, len(roles[n]))
		for id := range roles[n] {
			orgs = append(orgs, id)
		}
		slices.Sort(orgs)
		for _, id := range orgs {
			b.WriteString(id)
			b.WriteByte(':')
			b.WriteString(roles[n][id])
			b.WriteByte(',')
		}
		b.WriteByte(';')
	}
	return b.String()
}

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
	id := identityOf(s, c.projectID)
	key := roleSetKey(id.Roles, id.RoleNames)
	e = &identityEntry{tokenLen: len(s.IDToken), tokenTail: strings.Clone(tail(s.IDToken)), userinfo: bytes.Clone(s.Userinfo), rolesRead: s.RolesAt != 0, id: id}
	c.mu.Lock()
	if shared, ok := c.roles[key]; ok {
		id.Roles, id.RoleNames = shared.Roles, shared.RoleNames
	} else if len(c.roles) < maxRoleSets {
		c.roles[key] = id
	}
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
