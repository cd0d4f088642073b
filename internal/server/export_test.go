package server

import (
	"net/http"

	"github.com/gorilla/mux"
)

// HandlerWithProfilePage is the app's whole public chain with GET /profile's
// page swapped for page (still behind RequireSession), so a benchmark can
// tell the chain's cost from the page's.
func (a *App) HandlerWithProfilePage(page http.Handler) http.Handler {
	r := a.routes().(*mux.Router)
	_ = r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if t, _ := route.GetPathTemplate(); t == "/profile" {
			route.Handler(a.rp.RequireSession(page))
		}
		return nil
	})
	return a.middleware(r, a.decisionRoute)
}
