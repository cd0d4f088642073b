package forwardauth

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/redirect"
)

// Host labels of the decision counter besides the protected hosts' names.
const (
	otherHost   = "other"   // not allowed by the return-URL policy, or matched by a leading-dot entry past maxHostLabels
	unknownHost = "unknown" // no trusted proxy named the original URL
)

// maxHostLabels bounds the counter's series per outcome for the hosts
// only a leading-dot entry (.example.com) matches: it matches as many
// names as clients care to send.
const maxHostLabels = 100

// hostLabels names the protected host on the decision counter, so that
// made-up Host headers cannot multiply metric series: Gatehouse's own
// host and the hosts ALLOWED_REDIRECT_HOSTS names exactly always by
// their name (the configuration bounds them); hosts only a leading-dot
// entry matches by their name while they are among the first
// maxHostLabels such hosts, else otherHost, as everything else. The pool
// is not shared with named hosts: made-up subdomains filling it would
// otherwise leave the real apps counted as otherHost until a restart.
type hostLabels struct {
	policy *redirect.Policy
	mu     sync.RWMutex
	known  map[hostKey]string
	// pooled: how many of known only a leading-dot entry matched. Read
	// without the lock once the pool is full, so that a flood of made-up
	// subdomains does not queue every decision behind the write lock.
	pooled atomic.Int32
}

type hostKey struct{ scheme, host string }

func newHostLabels(p *redirect.Policy) *hostLabels {
	return &hostLabels{policy: p, known: make(map[hostKey]string)}
}

func (h *hostLabels) of(o forward.Original) string {
	if !o.Known {
		return unknownHost
	}
	k := hostKey{o.Scheme, o.Host}
	h.mu.RLock()
	label, ok := h.known[k]
	h.mu.RUnlock()
	if ok {
		return label
	}
	if h.policy == nil {
		return otherHost
	}
	m := h.policy.MatchHost(o.Scheme, o.Host)
	if m == redirect.NoMatch || m == redirect.Subdomain && h.pooled.Load() >= maxHostLabels {
		return otherHost
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if label, ok := h.known[k]; ok { // labelled meanwhile: counted once in the pool
		return label
	}
	if m == redirect.Subdomain {
		if h.pooled.Load() >= maxHostLabels {
			return otherHost
		}
		h.pooled.Add(1)
	}
	host := strings.Clone(o.Host) // not a slice of the request's header
	h.known[hostKey{o.Scheme, host}] = host
	return host
}
