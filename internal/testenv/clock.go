package testenv

import (
	"sync"
	"time"
)

// Clock is an app's clock that tests move forward (and back) to expire
// tokens and sessions without sleeping; the provider keeps real time.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now is the real time plus what tests added.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock by d (negative: back).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}
