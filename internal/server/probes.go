package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/session"
)

// healthz is liveness: the process serves HTTP. It touches no dependency,
// so a provider or Redis outage never gets the pod restarted.
func (a *App) healthz() http.Handler {
	body := []byte("ok\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}

// readyz is readiness: the provider's discovery and keys are loaded, the
// session store has answered, and we are not draining for shutdown. Like
// the provider, the store counts once it has answered: every replica shares
// it, so flipping readiness in a later outage would take all of them out of
// the Service at once and replace the friendly 503 pages with the ingress's
// own error. The check still shows the outage.
func (a *App) readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{"identity_provider": "ok", "session_store": "ok", "shutdown": "no"}
		body := map[string]any{"checks": checks}
		ready := true
		if !a.provider.Ready() {
			checks["identity_provider"] = "pending: discovery and signing keys not loaded yet"
			ready = false
		}
		if p, ok := a.sessions.(session.Pinger); ok {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			err := p.Ping(ctx)
			switch {
			case err != nil && a.storeSeen.Load():
				checks["session_store"] = "unavailable"
			case err != nil:
				checks["session_store"] = "unavailable"
				ready = false
			default:
				a.storeSeen.Store(true)
			}
			if tr, ok := a.sessions.(session.TopologyReporter); ok && err == nil {
				// Which node is primary: after a failover, where writes go now.
				if topo, err := tr.Topology(ctx); err == nil {
					body["redis"] = topo
				}
			}
			cancel()
		}
		if a.draining.Load() {
			checks["shutdown"] = "draining"
			ready = false
		}
		status, code := "ready", http.StatusOK
		if !ready {
			status, code = "not_ready", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		body["status"] = status
		_ = json.NewEncoder(w).Encode(body)
	})
}
