package bearer

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

// cacheKey is the SHA-256 of a token: the cache never holds a token.
type cacheKey [sha256.Size]byte

// hashToken hashes the token's bytes in place: converting the string to
// a []byte would copy it on every request (BenchmarkVerify_OpaqueCached:
// 1 allocation of the token's length); sha256 only reads its input.
func hashToken(token string) cacheKey {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// entry is a remembered verdict: identity set for a valid token, nil for
// an inactive one (reason says why).
type entry struct {
	until    time.Time
	identity *Identity
	reason   Reason
}

// cache is a bounded map of verdicts by token hash. When full, an insert
// first drops expired entries among a few it looks at, else one at random
// (Go's map iteration starts at a random place): no bookkeeping on a hit,
// so hits need only the read lock, and memory is bounded even under a
// flood of distinct tokens, which then only costs their own cache space.
type cache struct {
	mu      sync.RWMutex
	entries map[cacheKey]entry
	max     int
}

// evictionScan is how many entries an insert into a full cache looks at
// for expired ones before evicting one at random.
const evictionScan = 8

func newCache(max int) *cache {
	return &cache{entries: make(map[cacheKey]entry), max: max}
}

func (c *cache) get(k cacheKey, now time.Time) (entry, bool) {
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return entry{}, false
	}
	return e, true
}

// put stores e unless it is already expired at now.
func (c *cache) put(k cacheKey, e entry, now time.Time) {
	if !now.Before(e.until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.entries[k]; !exists && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[k] = e
}

func (c *cache) evictLocked(now time.Time) {
	var victim cacheKey
	seen, freed := 0, false
	for k, e := range c.entries {
		if !now.Before(e.until) {
			delete(c.entries, k)
			freed = true
		} else if seen == 0 {
			victim = k
		}
		if seen++; seen == evictionScan {
			break
		}
	}
	if !freed {
		delete(c.entries, victim)
	}
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
