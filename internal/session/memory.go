package session

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/sessions"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// MemoryStore keeps sessions in this process: logout and back-channel logout
// end them for real, but they die with the process and are not shared
// between replicas. Meant for development and single-replica use.
type MemoryStore struct {
	*gorillaStore
	backend *memoryBackend
}

// NewMemoryStore returns a store that keeps at most maxSessions (0: no limit);
// beyond it, the session closest to its end is dropped.
func NewMemoryStore(sealer *seal.Sealer, opts CookieOptions, now func() time.Time, maxSessions int) *MemoryStore {
	b := &memoryBackend{
		cookie:  idCookie{sealer: sealer, now: now},
		now:     now,
		max:     maxSessions,
		entries: map[string]memoryEntry{},
		bySID:   map[string]map[string]struct{}{},
		bySub:   map[string]map[string]struct{}{},
		once:    map[string]time.Time{},
		ended:   map[string]ended{},
	}
	return &MemoryStore{gorillaStore: newGorillaStore(b, opts, now), backend: b}
}

// DeleteByProviderSID ends every session of the provider session sid.
func (m *MemoryStore) DeleteByProviderSID(_ context.Context, sid string) (int, error) {
	return m.backend.deleteIndexed(m.backend.bySID, "sid:", sid), nil
}

// DeleteBySubject ends every session of the user sub.
func (m *MemoryStore) DeleteBySubject(_ context.Context, sub string) (int, error) {
	return m.backend.deleteIndexed(m.backend.bySub, "sub:", sub), nil
}

// maxOnce bounds the remembered keys: only logout tokens that passed
// signature checks get here, so this is a guard, not a working limit.
const maxOnce = 100_000

// MarkOnce remembers key until until and reports whether it was new.
func (m *MemoryStore) MarkOnce(_ context.Context, key string, until time.Time) (bool, error) {
	b := m.backend
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if t, ok := b.once[key]; ok && now.Before(t) {
		return false, nil
	}
	if len(b.once) >= maxOnce {
		for k, t := range b.once {
			if !now.Before(t) {
				delete(b.once, k)
			}
		}
		if len(b.once) >= maxOnce {
			return false, errors.New("memory store: too many remembered keys")
		}
	}
	b.once[key] = until
	return true, nil
}

// Unmark forgets key.
func (m *MemoryStore) Unmark(_ context.Context, key string) error {
	m.backend.mu.Lock()
	defer m.backend.mu.Unlock()
	delete(m.backend.once, key)
	return nil
}

// Len is the number of sessions held (expired ones are dropped lazily).
func (m *MemoryStore) Len() int {
	m.backend.mu.Lock()
	defer m.backend.mu.Unlock()
	return len(m.backend.entries)
}

type memoryEntry struct {
	s       Session // a copy: callers never share it
	expires time.Time
}

// memoryBackend is a gorilla/sessions store whose cookie carries only the
// sealed session ID.
type memoryBackend struct {
	cookie idCookie
	now    func() time.Time
	max    int

	mu      sync.Mutex
	entries map[string]memoryEntry
	bySID   map[string]map[string]struct{}
	bySub   map[string]map[string]struct{}
	once    map[string]time.Time
	// ended remembers back-channel logouts ("sid:"+sid, "sub:"+sub) for
	// endedTTL, against sign-ins still in flight (as the Redis store does).
	ended map[string]ended
}

type ended struct{ at, until time.Time }

func (b *memoryBackend) Get(r *http.Request, name string) (*sessions.Session, error) {
	return b.New(r, name)
}

func (b *memoryBackend) New(r *http.Request, name string) (*sessions.Session, error) {
	return newSession(b, r, name)
}

func (b *memoryBackend) loadSession(r *http.Request, name string) (*Session, error) {
	id, rotated, ok := b.cookie.id(r, name)
	if !ok {
		return nil, nil
	}
	b.mu.Lock()
	e, ok := b.entries[id]
	if ok && !b.now().Before(e.expires) {
		b.removeLocked(id)
		ok = false
	}
	b.mu.Unlock()
	if !ok {
		return nil, nil
	}
	s := e.s
	s.Reseal, s.stored, s.loaded = rotated, true, s.TokenStamp()
	return &s, nil
}

func (b *memoryBackend) Save(r *http.Request, w http.ResponseWriter, gsess *sessions.Session) error {
	if id, ok := b.cookie.deleting(r, gsess); ok {
		b.mu.Lock()
		b.removeLocked(id)
		b.mu.Unlock()
		b.cookie.set(w, gsess)
		return nil
	}
	s, err := savedSession(gsess)
	if err != nil {
		return err
	}
	e := memoryEntry{s: *s, expires: b.now().Add(time.Duration(gsess.Options.MaxAge) * time.Second)}
	e.s.Reseal = false
	b.mu.Lock()
	if gsess.IsNew && b.loggedOutLocked(s) {
		b.mu.Unlock()
		return ErrLoggedOut
	}
	old, ok := b.entries[s.ID]
	if !gsess.IsNew {
		if !ok {
			b.mu.Unlock()
			return ErrNoSession // ended while this request was in flight: do not bring it back
		}
		if stamp := old.s.TokenStamp(); stamp != s.loaded && stamp != s.TokenStamp() {
			// Refreshed since this request loaded it: keep the newer tokens.
			b.mu.Unlock()
			b.cookie.set(w, gsess)
			return nil
		}
	}
	b.removeLocked(s.ID)
	if b.max > 0 && len(b.entries) >= b.max {
		b.evictLocked()
	}
	b.entries[s.ID] = e
	index(b.bySID, s.ProviderSID, s.ID)
	index(b.bySub, s.Subject, s.ID)
	b.mu.Unlock()
	b.cookie.set(w, gsess)
	return nil
}

func (b *memoryBackend) deleteIndexed(idx map[string]map[string]struct{}, kind, key string) int {
	if key == "" {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if len(b.ended) >= maxOnce {
		for k, e := range b.ended {
			if now.After(e.until) {
				delete(b.ended, k)
			}
		}
	}
	b.ended[kind+key] = ended{at: now, until: now.Add(endedTTL)}
	ids := idx[key]
	n := 0
	for id := range ids {
		if _, ok := b.entries[id]; ok {
			n++
		}
		b.removeLocked(id)
	}
	return n
}

// loggedOutLocked: a back-channel logout for s's provider session, or for
// its user since its sign-in started, arrived while it was in flight.
func (b *memoryBackend) loggedOutLocked(s *Session) bool {
	now := b.now()
	if e, ok := b.ended["sid:"+s.ProviderSID]; ok && s.ProviderSID != "" && now.Before(e.until) {
		return true
	}
	started := s.SignInStarted
	if started.IsZero() {
		started = now
	}
	e, ok := b.ended["sub:"+s.Subject]
	return ok && now.Before(e.until) && !e.at.Before(started)
}

func (b *memoryBackend) removeLocked(id string) {
	e, ok := b.entries[id]
	if !ok {
		return
	}
	delete(b.entries, id)
	unindex(b.bySID, e.s.ProviderSID, id)
	unindex(b.bySub, e.s.Subject, id)
}

// evictLocked drops expired entries, or else the one that ends first.
func (b *memoryBackend) evictLocked() {
	now := b.now()
	var first string
	var firstEnd time.Time
	for id, e := range b.entries {
		if !now.Before(e.expires) {
			b.removeLocked(id)
			continue
		}
		if first == "" || e.expires.Before(firstEnd) {
			first, firstEnd = id, e.expires
		}
	}
	if len(b.entries) >= b.max && first != "" {
		b.removeLocked(first)
	}
}

func index(idx map[string]map[string]struct{}, key, id string) {
	if key == "" {
		return
	}
	set := idx[key]
	if set == nil {
		set = map[string]struct{}{}
		idx[key] = set
	}
	set[id] = struct{}{}
}

func unindex(idx map[string]map[string]struct{}, key, id string) {
	if set := idx[key]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(idx, key)
		}
	}
}
