package session

import (
	"strings"
	"sync"
)

// openedSessions is how many opened cookie values the cookie store
// remembers: about 6 KB each with ZITADEL's tokens.
const openedSessions = 256

// openedCache remembers the sessions most recently opened from cookie
// values; a browser sends the same value on every request until the
// session is saved again. Needed for the session-check budget: BenchmarkSessionCheck (internal/auth).
//
// The key is the whole cookie value as received: a hit means the very
// bytes that were already authenticated and decrypted, so a tampered or
// forged value can never be served from here. Opening does not depend on
// the time (expiry is checked by the caller on every request) and the
// secrets are fixed for the process's life, so an entry never goes stale;
// it only goes unused once the browser has a newer cookie. A random entry
// makes room when it is full.
type openedCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]*Session
}

func newOpenedCache(max int) *openedCache {
	return &openedCache{max: max, m: make(map[string]*Session, max)}
}

// get returns a copy the caller may change.
func (c *openedCache) get(value string) (*Session, bool) {
	c.mu.RLock()
	s, ok := c.m[value]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	cp := *s
	return &cp, true
}

// put keeps a copy of s as it was opened from value.
func (c *openedCache) put(value string, s *Session) {
	cp := *s
	key := strings.Clone(value) // not a slice of the request's whole Cookie header
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = &cp
}
