package server

import (
	"net/http"
	"net/http/pprof"

	"github.com/gorilla/mux"

	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/web"
)

// routes registers every route of the public listener. The paths are the
// ones ZITADEL app settings and docs refer to: keep them.
func (a *App) routes() http.Handler {
	r := mux.NewRouter()
	r.Use(nameRoute) // logs, spans and metrics name requests by route template
	rp, pages := a.rp, a.pages
	protected := rp.RequireSession // session checked (auth/decide.go), else sign in
	optional := rp.OptionalSession // session shown if there is one

	// Static files. (The probes are in probeRoutes.)
	r.PathPrefix("/static/").Handler(http.StripPrefix("/static/", web.Static())).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/favicon.ico", web.Favicon()).Methods(http.MethodGet, http.MethodHead)

	// Pages. (With SIGNIN_PAGE=skip, a sign-in page visit sent by a
	// protected app starts the sign-in at once: auth.SignInEntry.)
	r.Handle("/", optional(web.Landing(pages))).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/auth/signin", rp.SignInEntry(optional(web.SignIn(pages, rp.ReturnURL)), a.limitSignIn(rp.SignIn()))).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/profile", protected(web.Profile(pages, a.cfg.ProjectID))).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/admin", rp.RequireRole(a.cfg.AdminRole)(web.Admin(pages, a.cfg.AdminRole, a.cfg.ProjectID))).Methods(http.MethodGet, http.MethodHead)

	// The OpenID Connect relying party (internal/auth).
	r.Handle("/auth/signin/zitadel", a.limitSignIn(rp.SignIn())).Methods(http.MethodPost)
	r.Handle("/auth/callback", a.limitCallback(rp.Callback())).Methods(http.MethodGet)
	r.Handle("/auth/userinfo", protected(rp.Userinfo())).Methods(http.MethodGet)
	r.Handle("/auth/logout", rp.Logout()).Methods(http.MethodPost)
	r.Handle("/auth/logout", optional(web.LogoutConfirm(pages))).Methods(http.MethodGet, http.MethodHead) // apps' "Sign out" links
	r.Handle("/auth/logout/callback", rp.LogoutCallback()).Methods(http.MethodGet)
	r.Handle("/auth/backchannel-logout", rp.BackchannelLogout()).Methods(http.MethodPost) // server to server
	r.Handle("/auth/logout/success", web.LogoutSuccess(pages)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/auth/logout/error", web.MessagePage(pages, http.StatusOK, "logout_state_mismatch")).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/auth/error", web.AuthError(pages)).Methods(http.MethodGet, http.MethodHead)

	// Forward-auth: the decision endpoints are in decisionRoute; this is
	// the public key set of their signed assertion.
	r.Handle("/auth/jwks.json", a.signer.JWKSHandler()).Methods(http.MethodGet, http.MethodHead)

	r.NotFoundHandler = optional(web.MessagePage(pages, http.StatusNotFound, "not_found"))
	r.MethodNotAllowedHandler = web.MessagePage(pages, http.StatusMethodNotAllowed, "internal")
	return r
}

// decisionRoute is where proxies ask about another app's requests
// (internal/forwardauth, docs/FORWARD-AUTH.md), and the route template
// each is logged and traced under:
//
//	GET|HEAD /auth/verify           nginx auth_request, ingress-nginx auth-url
//	/auth/forward, any method       Traefik ForwardAuth, Caddy forward_auth
//	/auth/forward/..., any method   Envoy ext_authz path_prefix (and /auth/forward;rules/...)
//
// They are matched before the cross-origin check and the router (App.
// middleware): the request is a proxy's, about a request to another app,
// with the original method (Envoy) and the original path appended as sent,
// which the router would clean with a 301 ("//" in it).
func (a *App) decisionRoute(r *http.Request) (http.Handler, string) {
	switch forward.AdapterOf(r) {
	case forward.Verify:
		return a.forward, forward.VerifyPath
	case forward.Forward:
		return a.forward, forward.ForwardPath
	case forward.Envoy:
		return a.forward, forward.ForwardPath + "/*"
	}
	return nil, ""
}

// probeRoutes are answered in front of the middleware chain (App.front):
// orchestrators ask every few seconds, so no span, no access log, no
// session and no router, only the security headers.
func (a *App) probeRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"/healthz": a.healthz(),
		"/readyz":  a.readyz(),
	}
}

// adminRoutes is the admin listener (ADMIN_ADDR), which is never the
// public port: metrics, the probes again for orchestrators that probe
// there, and the profiler when ADMIN_PPROF is true.
func (a *App) adminRoutes() http.Handler {
	r := http.NewServeMux()
	if m := a.tel.MetricsHandler(); m != nil {
		r.Handle("GET /metrics", m)
	}
	r.Handle("GET /healthz", a.healthz())
	r.Handle("GET /readyz", a.readyz())
	if a.cfg.AdminPprof { // ADMIN_PPROF: CPU, heap, goroutine profiles for `go tool pprof`
		r.HandleFunc("GET /debug/pprof/", pprof.Index)
		r.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		r.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		r.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return r
}
