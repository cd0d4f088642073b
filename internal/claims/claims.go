// Package claims reads what ZITADEL's tokens say about a signed-in user:
// name, e-mail, organisation, project roles and metadata, from the
// session's ID token and userinfo. The relying party (internal/auth) checks
// roles with it; the pages (internal/web) show it.
package claims

import (
	"encoding/base64"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/session"
)

// ZITADEL's claim names.
const (
	claimRoles       = "urn:zitadel:iam:org:project:roles"
	claimRolesPrefix = "urn:zitadel:iam:org:project:"
	claimOwnerID     = "urn:zitadel:iam:user:resourceowner:id"
	claimOwnerName   = "urn:zitadel:iam:user:resourceowner:name"
	claimOwnerDomain = "urn:zitadel:iam:user:resourceowner:primary_domain"
	claimMetadata    = "urn:zitadel:iam:user:metadata"
)

// Profile is what the profile page shows, read from the session's ID token
// and userinfo. With an access token, ZITADEL's ID token carries no profile
// or e-mail claims: userinfo fills them in, and wins where both have a value.
type Profile struct {
	Subject   string
	Name      string
	Email     string
	Username  string
	Org       Org
	Roles     []Role
	Metadata  []Metadata
	ExpiresAt time.Time
	CreatedAt time.Time
	Claims    map[string]any // merged ID token and userinfo claims
}

// Org is the user's organisation (ZITADEL's resource owner).
type Org struct{ ID, Name, Domain string }

// Role is a project role and the organisations that granted it.
type Role struct {
	Name string
	Orgs []string // "<org domain> (<org id>)"
}

// Metadata is one user metadata entry, its value decoded from base64.
type Metadata struct{ Key, Value string }

// HasRole reports whether the user has the project role.
func (p Profile) HasRole(name string) bool {
	for _, r := range p.Roles {
		if r.Name == name {
			return true
		}
	}
	return false
}

// ProfileOf reads s; its roles are projectID's (see SessionRoles). The ID
// token was verified when the session was created and has been sealed
// since, so its payload is decoded, not verified again.
func ProfileOf(s *session.Session, projectID string) Profile {
	claims := Merged(s)
	p := Profile{
		Subject:   s.Subject,
		Name:      str(claims["name"]),
		Email:     str(claims["email"]),
		Username:  str(claims["preferred_username"]),
		ExpiresAt: time.Unix(s.ExpiresAt, 0),
		CreatedAt: time.Unix(s.CreatedAt, 0),
		Claims:    claims,
		Org: Org{
			ID:     str(claims[claimOwnerID]),
			Name:   str(claims[claimOwnerName]),
			Domain: str(claims[claimOwnerDomain]),
		},
	}
	if p.Name == "" {
		p.Name = strings.TrimSpace(str(claims["given_name"]) + " " + str(claims["family_name"]))
	}
	p.Roles = Roles(s, projectID)
	if md, ok := claims[claimMetadata].(map[string]any); ok {
		for k, v := range md {
			val := str(v)
			if dec, err := base64.StdEncoding.DecodeString(val); err == nil {
				val = string(dec)
			}
			p.Metadata = append(p.Metadata, Metadata{Key: k, Value: val})
		}
		sort.Slice(p.Metadata, func(i, j int) bool { return p.Metadata[i].Key < p.Metadata[j].Key })
	}
	return p
}

// Merged is what the session's ID token and userinfo say together:
// userinfo wins where both have a value. The ID token was verified when
// the session was created and has been sealed since, so its payload is
// decoded, not verified again. The spent nonce is left out.
func Merged(s *session.Session) map[string]any {
	claims := IDTokenClaims(s.IDToken)
	if len(s.Userinfo) > 0 {
		var info map[string]any
		if json.Unmarshal(s.Userinfo, &info) == nil {
			for k, v := range info {
				if v != nil && v != "" {
					claims[k] = v
				}
			}
		}
	}
	// Spent, but still a protocol secret: not for display.
	delete(claims, "nonce")
	return claims
}

// RolesClaim is the one claim a session's or token's project roles are
// read from: urn:zitadel:iam:org:project:<projectID>:roles when a project
// is configured (ZITADEL_PROJECT_ID), else urn:zitadel:iam:org:project:roles,
// the roles in the project of the application the tokens were issued to.
// Another project's urn:zitadel:iam:org:project:<id>:roles never counts: a
// grant there is for other applications.
func RolesClaim(projectID string) string {
	if projectID == "" {
		return claimRoles
	}
	return claimRolesPrefix + projectID + ":roles"
}

// ProjectRoles reads RolesClaim(projectID) of claims (a session's, or a
// bearer token's), an object map {"role": {"<orgId>": "<org domain>"}};
// entries of another shape are skipped.
func ProjectRoles(claims map[string]any, projectID string) forward.Roles {
	return forward.RolesFromClaim(claims[RolesClaim(projectID)])
}

// SessionRoles is the one lookup of a signed-in user's project roles, for
// every decision (RequireRole, forward-auth rules, the upstream's groups
// and assertion) and every page: from RolesClaim(projectID) of the
// session's userinfo once Gatehouse has read roles from userinfo (RolesAt
// set: at sign-in, at each refresh, and when they are older than
// ROLES_MAX_AGE; ZITADEL puts roles into userinfo whenever it puts them
// anywhere, and a user left with no roles gets no claim at all, so a stale
// ID token must not fill the gap), else from the ID token and userinfo
// merged (sessions from before RolesAt existed).
func SessionRoles(s *session.Session, projectID string) forward.Roles {
	if s.RolesAt == 0 {
		return ProjectRoles(Merged(s), projectID)
	}
	var info map[string]any
	_ = json.Unmarshal(s.Userinfo, &info)
	return ProjectRoles(info, projectID)
}

// Roles is SessionRoles as the profile page lists them.
func Roles(s *session.Session, projectID string) []Role {
	grants := SessionRoles(s, projectID)
	roles := make([]Role, 0, len(grants))
	for name, orgs := range grants {
		r := Role{Name: name}
		for id, domain := range orgs {
			r.Orgs = append(r.Orgs, domain+" ("+id+")")
		}
		sort.Strings(r.Orgs)
		roles = append(roles, r)
	}
	sort.Slice(roles, func(i, j int) bool { return roles[i].Name < roles[j].Name })
	return roles
}

// OrgID is the user's own organisation (urn:zitadel:iam:user:resourceowner:id).
func OrgID(claims map[string]any) string { return str(claims[claimOwnerID]) }

func str(v any) string {
	s, _ := v.(string)
	return s
}

// IDTokenClaims decodes a JWT's payload without verifying it: only for
// tokens that were verified before they were sealed into the session.
func IDTokenClaims(jwt string) map[string]any {
	claims := map[string]any{}
	if parts := strings.Split(jwt, "."); len(parts) == 3 {
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			_ = json.Unmarshal(b, &claims)
		}
	}
	return claims
}
