package claims

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/internal/forward"
)

// RoleSets interns role sets: cached identities whose users hold the same
// grants (most users of an organisation do) share one Roles map and
// RoleNames slice instead of a copy each, which is most of a cached
// identity's memory (the forward-auth memory budget, cmd/gatehouse-load:
// decisions over many sessions; BenchmarkCacheEntryMemory,
// internal/bearer). Bounded: past its size, identities keep their own.
// Safe for concurrent use.
type RoleSets struct {
	mu   sync.Mutex
	max  int
	sets map[string]*Identity // role set key → the first identity with it (its Roles, RoleNames)
}

// NewRoleSets interns up to max distinct role sets.
func NewRoleSets(max int) *RoleSets {
	return &RoleSets{max: max, sets: make(map[string]*Identity)}
}

// Share makes id, before anyone else reads it, use the interned copy of
// its role set (interning it when it is new and there is room). The roles
// come from tokens and userinfo and may hold any characters, so the key
// is only a lookup: a set is shared only when it is equal.
func (rs *RoleSets) Share(id *Identity) {
	key := roleSetKey(id.Roles, id.RoleNames)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if shared, ok := rs.sets[key]; ok {
		if sameRoles(shared, id) {
			id.Roles, id.RoleNames = shared.Roles, shared.RoleNames
		}
	} else if len(rs.sets) < rs.max {
		rs.sets[key] = &Identity{Roles: id.Roles, RoleNames: id.RoleNames}
	}
}

func sameRoles(a, b *Identity) bool {
	return slices.Equal(a.RoleNames, b.RoleNames) &&
		maps.EqualFunc(a.Roles, b.Roles, maps.Equal[map[string]string, map[string]string])
}

// roleSetKey is a canonical text of roles: names in their (sorted) order,
// each with its organisations sorted by ID, every string length-prefixed
// so that no role name or domain can read as a separator.
func roleSetKey(roles forward.Roles, names []string) string {
	var b strings.Builder
	field := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	b.WriteString(strconv.Itoa(len(roles)))
	b.WriteByte(';')
	for _, n := range names {
		field(n)
		orgs := slices.Sorted(maps.Keys(roles[n]))
		b.WriteString(strconv.Itoa(len(orgs)))
		b.WriteByte(';')
		for _, id := range orgs {
			field(id)
			field(roles[n][id])
		}
	}
	return b.String()
}
