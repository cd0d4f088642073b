package forwardauth

import (
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/redirect"
)

// Host labels of the decision counter besides the protected hosts' names.
const (
	otherHost   = "other"   // not Gatehouse's own host, not in ALLOWED_REDIRECT_HOSTS, or past maxHostLabels
	unknownHost = "unknown" // no trusted proxy named the original URL
)

// maxHostLabels bounds the counter's series per outcome: a wildcard entry
// (.example.com) matches as many names as clients care to send.
const maxHostLabels = 100

// hostLabels names the protected host on the decision counter: the host
// itself when the return-URL policy allows it (Gatehouse's own and
// ALLOWED_REDIRECT_HOSTS), for the first maxHostLabels such hosts, and
// otherHost for everything else, so made-up Host headers cannot multiply
// metric series.
type hostLabels struct {
	policy *redirect.Policy
	mu     sync.RWMutex
	known  map[hostKey]string
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
	if h.policy == nil || !h.policy.HostAllowed(o.Scheme, o.Host) {
		return otherHost
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.known) >= maxHostLabels {
		return otherHost
	}
	host := strings.Clone(o.Host) // not a slice of the request's header
	h.known[hostKey{o.Scheme, host}] = host
	return host
}
