package web

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/templates"
)

type (
	claimRow   = templates.ClaimRow
	claimGroup = templates.ClaimGroup
)

type claimInfo struct {
	group, label string
	code, time   bool
	roles        bool // {"role": {"orgID": "domain"}}: show the role names
	metadata     bool // {"key": "base64"}: show key: decoded value
}

// knownClaims explains the claims an OpenID provider, and ZITADEL in
// particular, sends; unknown claims are shown too, under "Other".
var knownClaims = map[string]claimInfo{
	"sub":                   {group: "you", label: "Subject: your user ID at the provider", code: true},
	"name":                  {group: "you", label: "Full name"},
	"given_name":            {group: "you", label: "Given name"},
	"family_name":           {group: "you", label: "Family name"},
	"middle_name":           {group: "you", label: "Middle name"},
	"nickname":              {group: "you", label: "Nickname"},
	"preferred_username":    {group: "you", label: "Username"},
	"email":                 {group: "you", label: "E-mail address"},
	"email_verified":        {group: "you", label: "The provider has verified the e-mail address"},
	"phone_number":          {group: "you", label: "Phone number"},
	"phone_number_verified": {group: "you", label: "The provider has verified the phone number"},
	"gender":                {group: "you", label: "Gender"},
	"birthdate":             {group: "you", label: "Birth date"},
	"locale":                {group: "you", label: "Preferred language"},
	"zoneinfo":              {group: "you", label: "Time zone"},
	"picture":               {group: "you", label: "Picture"},
	"profile":               {group: "you", label: "Profile page"},
	"website":               {group: "you", label: "Website"},
	"updated_at":            {group: "you", label: "Profile last changed", time: true},

	"iss":       {group: "token", label: "Issuer: who signed the token"},
	"aud":       {group: "token", label: "Audience: the application the token is for", code: true},
	"azp":       {group: "token", label: "Authorized party: the application that asked for it", code: true},
	"client_id": {group: "token", label: "Client ID of this application", code: true},
	"iat":       {group: "token", label: "Issued", time: true},
	"exp":       {group: "token", label: "Expires", time: true},
	"nbf":       {group: "token", label: "Not valid before", time: true},
	"auth_time": {group: "token", label: "When you authenticated", time: true},
	"amr":       {group: "token", label: "Authentication methods (pwd: password, mfa: several factors)"},
	"acr":       {group: "token", label: "Authentication context class"},
	"at_hash":   {group: "token", label: "Access-token hash: ties the access token to this ID token", code: true},
	"c_hash":    {group: "token", label: "Code hash: ties the authorization code to this ID token", code: true},
	"sid":       {group: "token", label: "Session ID at the provider", code: true},
	"jti":       {group: "token", label: "Token ID", code: true},

	"urn:zitadel:iam:org:project:roles":                 {group: "zitadel", label: "Project roles, with the organisations that granted them", code: true, roles: true},
	"urn:zitadel:iam:user:resourceowner:id":             {group: "zitadel", label: "Your organisation's ID", code: true},
	"urn:zitadel:iam:user:resourceowner:name":           {group: "zitadel", label: "Your organisation's name"},
	"urn:zitadel:iam:user:resourceowner:primary_domain": {group: "zitadel", label: "Your organisation's primary domain"},
	"urn:zitadel:iam:user:metadata":                     {group: "zitadel", label: "User metadata (decoded; raw values are base64)", code: true, metadata: true},
	"urn:zitadel:iam:org:id":                            {group: "zitadel", label: "Organisation the sign-in was scoped to", code: true},
	"urn:zitadel:iam:org:domain:primary":                {group: "zitadel", label: "Primary domain of that organisation"},
}

var groupOrder = [...]claimGroup{
	{ID: "you", Title: "About you", Note: "Profile claims from the ID token and the userinfo endpoint."},
	{ID: "token", Title: "About the token", Note: "Protocol claims Gatehouse checked before it started your session."},
	{ID: "zitadel", Title: "ZITADEL", Note: "ZITADEL's own claims: organisation, project roles, metadata."},
	{ID: "other", Title: "Other claims"},
}

// familiarClaims are shown first, in the order people read them; the
// rest follow by name.
var familiarClaims = func() map[string]int {
	m := map[string]int{}
	for i, n := range []string{"sub", "name", "given_name", "family_name", "preferred_username", "email", "email_verified",
		"iss", "aud", "azp", "client_id", "auth_time", "iat", "exp"} {
		m[n] = i
	}
	return m
}()

// claimGroups sorts claims into the profile page's tables; empty groups
// are left out.
func claimGroups(claims map[string]any) []claimGroup {
	var byGroup [len(groupOrder)][]claimRow
	for name, v := range claims {
		info, known := knownClaims[name]
		switch {
		case known:
		case strings.HasPrefix(name, "urn:zitadel:iam:org:project:") && strings.HasSuffix(name, ":roles"):
			id := strings.TrimSuffix(strings.TrimPrefix(name, "urn:zitadel:iam:org:project:"), ":roles")
			info = claimInfo{group: "zitadel", label: "Project roles in project " + id, code: true, roles: true}
		case strings.HasPrefix(name, "urn:zitadel:"):
			info = claimInfo{group: "zitadel", code: true}
		default:
			info = claimInfo{group: "other"}
		}
		g := groupIndex(info.group)
		byGroup[g] = append(byGroup[g], claimValue(name, v, info))
	}
	out := make([]claimGroup, 0, len(groupOrder))
	for i, g := range groupOrder {
		rows := byGroup[i]
		if len(rows) == 0 {
			continue
		}
		slices.SortFunc(rows, compareClaims)
		g.Rows = rows
		out = append(out, g)
	}
	return out
}

func groupIndex(id string) int {
	for i, g := range groupOrder {
		if g.ID == id {
			return i
		}
	}
	return len(groupOrder) - 1 // "other"
}

// compareClaims sorts the familiar claims first, in their order, and the
// rest by name.
func compareClaims(a, b claimRow) int {
	ra, fa := familiarClaims[a.Name]
	rb, fb := familiarClaims[b.Name]
	switch {
	case fa && fb:
		return cmp.Compare(ra, rb)
	case fa:
		return -1
	case fb:
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

func claimValue(name string, v any, info claimInfo) claimRow {
	row := claimRow{Name: name, Parts: strings.SplitAfter(name, ":"), Label: info.label, Code: info.code}
	if m, ok := v.(map[string]any); ok && (info.roles || info.metadata) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if info.metadata {
			for i, k := range keys {
				val, _ := m[k].(string)
				if dec, err := base64.StdEncoding.DecodeString(val); err == nil {
					val = string(dec)
				}
				keys[i] = k + ": " + val
			}
		}
		row.Value, row.Code, row.Raw = strings.Join(keys, ", "), false, compactJSON(m)
		return row
	}
	switch x := v.(type) {
	case string:
		row.Value = x
	case bool:
		row.Value, row.Code = strconv.FormatBool(x), true
	case float64:
		row.Value = strconv.FormatFloat(x, 'g', -1, 64) // as fmt's %v
		if info.time && x > 0 {
			row.Raw = strconv.FormatFloat(x, 'f', 0, 64)
			row.Value = time.Unix(int64(x), 0).UTC().Format("2 Jan 2006, 15:04:05 MST")
		}
	case []any:
		parts := make([]string, 0, len(x))
		plain := true
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				plain = false
				break
			}
			parts = append(parts, s)
		}
		if plain {
			row.Value = strings.Join(parts, ", ")
			break
		}
		row.Value, row.Code = compactJSON(x), true
	default:
		row.Value, row.Code = compactJSON(x), true
	}
	return row
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
