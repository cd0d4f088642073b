package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/claims"
	"github.com/gatehouse/gatehouse/templates"
)

// Landing is GET /.
func Landing(p *Pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := p.frame(r, "Welcome")
		p.write(w, r, http.StatusOK, f, templates.IndexPage(f))
	})
}

// SignIn is GET /auth/signin: the page with the "Sign in with ZITADEL"
// form. The return URL comes as rd (ingress-nginx's auth-signin, the
// forward-auth endpoints) or callbackUrl (Gatehouse's own pages); the form
// carries it on only when returnURL (the relying party's policy) accepts it.
func SignIn(p *Pages, returnURL func(string) (string, bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		raw := q.Get("rd")
		if raw == "" {
			raw = q.Get("callbackUrl")
		}
		target, ok := returnURL(raw)
		if !ok {
			target = ""
		}
		p.Render(w, r, http.StatusOK, "Sign in", templates.SignInPage(templates.SignIn{
			Banner: signInMessage(q.Get("error")), CallbackURL: target,
		}))
	})
}

// Profile is GET /profile (behind RequireSession); the roles shown are
// projectID's (ZITADEL_PROJECT_ID), as every decision reads them.
func Profile(p *Pages, projectID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prof := claims.ProfileOf(auth.SessionFrom(r.Context()), projectID)
		raw, err := json.MarshalIndent(prof.Claims, "", "  ")
		if err != nil {
			raw = []byte("{}")
		}
		v := templates.Profile{
			Subject:     prof.Subject,
			Name:        prof.Name,
			Email:       prof.Email,
			Username:    prof.Username,
			Org:         templates.Org{Name: prof.Org.Name, Domain: prof.Org.Domain},
			Roles:       roles(prof.Roles),
			Initials:    initials(prof),
			ExpiresISO:  prof.ExpiresAt.UTC().Format(time.RFC3339),
			ExpiresText: prof.ExpiresAt.UTC().Format("2 Jan 2006, 15:04 MST") + " (" + until(prof.ExpiresAt) + ")",
			SinceISO:    prof.CreatedAt.UTC().Format(time.RFC3339),
			SinceText:   prof.CreatedAt.UTC().Format("2 Jan 2006, 15:04 MST"),
			Groups:      claimGroups(prof.Claims),
			RawJSON:     string(raw),
			OpenRaw:     r.URL.Query().Get("tab") == "claims",
		}
		for _, m := range prof.Metadata {
			v.Metadata = append(v.Metadata, templates.Metadata(m))
		}
		p.Render(w, r, http.StatusOK, "Profile", templates.ProfilePage(v))
	})
}

// Admin is GET /admin (behind RequireRole(role)).
func Admin(p *Pages, role, projectID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prof := claims.ProfileOf(auth.SessionFrom(r.Context()), projectID)
		p.Render(w, r, http.StatusOK, "Admin", templates.AdminPage(templates.Admin{
			Role:  role,
			Org:   templates.Org{Name: prof.Org.Name, Domain: prof.Org.Domain},
			Roles: roles(prof.Roles),
		}))
	})
}

func roles(rs []claims.Role) []templates.Role {
	if len(rs) == 0 {
		return nil
	}
	out := make([]templates.Role, len(rs))
	for i, r := range rs {
		out[i] = templates.Role(r)
	}
	return out
}

// MessagePage serves a fixed friendly page (logout success, errors, 404).
func MessagePage(p *Pages, status int, code string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Message(w, r, status, code)
	})
}

// LogoutConfirm is GET /auth/logout: the page a protected app's "Sign out"
// link opens, whose button posts the sign-out.
func LogoutConfirm(p *Pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Render(w, r, http.StatusOK, "Sign out", templates.LogoutPage())
	})
}

// LogoutSuccess is GET /auth/logout/success.
func LogoutSuccess(p *Pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := "logout_success"
		if r.URL.Query().Get("provider") == "unavailable" {
			code = "logout_local"
		}
		p.Message(w, r, http.StatusOK, code)
	})
}

// AuthError is GET /auth/error?error=CODE: known codes get their text,
// anything else a generic one.
func AuthError(p *Pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := r.URL.Query().Get("error")
		if _, ok := messages[code]; !ok {
			code = "internal"
		}
		p.Message(w, r, http.StatusOK, code)
	})
}

func initials(p claims.Profile) string {
	var out []rune
	for _, f := range strings.Fields(p.Name) {
		for _, r := range f {
			out = append(out, r)
			break
		}
		if len(out) == 2 {
			break
		}
	}
	if len(out) == 0 {
		return "?"
	}
	return strings.ToUpper(string(out))
}

func until(t time.Time) string {
	d := time.Until(t).Round(time.Minute)
	if d <= 0 {
		return "now"
	}
	if d < time.Hour {
		return fmt.Sprintf("in %d min", int(d.Minutes()))
	}
	return fmt.Sprintf("in %dh %02dm", int(d.Hours()), int(d.Minutes())%60)
}
