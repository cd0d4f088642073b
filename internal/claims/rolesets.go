package claims

import (
	"slices"
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
// its role set (interning it when it is new and there is room).
func (rs *RoleSets) Share(id *Identity) {
	key := roleSetKey(id.Roles, id.RoleNames)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if shared, ok := rs.sets[key]; ok {
		id.Roles, id.RoleNames = shared.Roles, shared.RoleNames
	} else if len(rs.sets) < rs.max {
		rs.sets[key] = &Identity{Roles: id.Roles, RoleNames: id.RoleNames}
	}
}

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
