package bearer

import (
	"fmt"
	"testing"
	"time"
)

func key(i int) cacheKey { return hashToken(fmt.Sprint(i)) }

func TestCache_DropsExpiredEntriesBeforeLiveOnes(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := newCache(100)
	c.put(key(0), entry{until: now.Add(time.Hour), identity: &Identity{}}, now) // the one live entry
	for i := 1; i < 100; i++ {
		c.put(key(i), entry{until: now.Add(time.Second), identity: &Identity{}}, now)
	}
	later := now.Add(time.Minute)
	for i := 100; i < 200; i++ {
		c.put(key(i), entry{until: later.Add(time.Hour), identity: &Identity{}}, later)
		if c.len() > 100 {
			t.Fatalf("cache grew to %d entries, bound 100", c.len())
		}
		// While expired entries remain, every scan finds one: no live
		// entry is evicted (the scan frees all the expired ones it sees).
		if i < 110 {
			for j := 100; j <= i; j++ {
				if _, ok := c.get(key(j), later); !ok {
					t.Fatalf("live entry %d evicted after %d inserts, with expired entries left", j, i-99)
				}
			}
			if _, ok := c.get(key(0), later); !ok {
				t.Fatalf("the first live entry was evicted after %d inserts", i-99)
			}
		}
	}
}

func TestCache_FullOfLiveEntries_EvictsOneAndNeverGrows(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := newCache(10)
	for i := range 1000 {
		c.put(key(i), entry{until: now.Add(time.Hour), identity: &Identity{}}, now)
		if c.len() > 10 {
			t.Fatalf("%d entries after %d inserts", c.len(), i+1)
		}
	}
	if _, ok := c.get(key(999), now); !ok {
		t.Fatal("the newest entry was evicted")
	}
}

func TestCache_ExpiryIsExclusiveAndExpiredAnswersAreNotStored(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := newCache(10)
	c.put(key(1), entry{until: now.Add(time.Second), identity: &Identity{}}, now)
	if _, ok := c.get(key(1), now.Add(time.Second-1)); !ok {
		t.Fatal("gone before its time")
	}
	if _, ok := c.get(key(1), now.Add(time.Second)); ok {
		t.Fatal("answered at its expiry instant")
	}
	c.put(key(2), entry{until: now}, now)
	if c.len() != 1 {
		t.Fatal("stored an answer that was already expired")
	}
}
