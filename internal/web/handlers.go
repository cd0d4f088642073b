package web

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/templates"
)

// Landing is GET /.
func Landing(p *Pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := p.frame(r, "Welcome")
		p.write(w, r, http.StatusOK, f, templates.IndexPage(f))
	})
}

// SignIn is GET /auth/signin: the page with the "Sign in with ZITADEL" form.
func SignIn(p *Pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		target := q.Get("callbackUrl")
		if !config.IsLocalPath(target) {
			target = ""
		}
		p.Render(w, r, http.StatusOK, "Sign in", templates.SignInPage(templates.SignIn{
			Banner: signInMessage(q.Get("error")), CallbackURL: target,
		}))
	})
}

// Profile is GET /profile (behind RequireSession).
func Profile(p *Pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := p.accounts.of(auth.SessionFrom(r.Context()))
		v := a.profile // a copy; its slices are shared and only read
		v.ExpiresText = a.expires + " (" + until(a.prof.ExpiresAt) + ")"
		v.OpenRaw = r.URL.Query().Get("tab") == "claims"
		// The page is the same for every request of this session within a
		// minute (the time left is its only changing text): rendered once.
		key := v.ExpiresText + strconv.FormatBool(v.OpenRaw)
		if page, ok := a.page(key); ok {
			send(w, r, http.StatusOK, page)
			return
		}
		var buf bytes.Buffer
		if !p.render(&buf, r, p.frame(r, "Profile"), templates.ProfilePage(v)) {
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
			return
		}
		a.keepPage(key, buf.Bytes())
		send(w, r, http.StatusOK, buf.Bytes())
	})
}

// Admin is GET /admin (behind RequireSession and RequireRole(role)).
func Admin(p *Pages, role string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := p.accounts.of(auth.SessionFrom(r.Context()))
		v := templates.Admin{
			Role:  role,
			Org:   a.profile.Org,
			Roles: a.profile.Roles,
		}
		p.write(w, r, http.StatusOK, p.frame(r, "Admin"), templates.AdminPage(v))
	})
}

func roles(rs []auth.Role) []templates.Role {
	if len(rs) == 0 {
		return nil
	}
	out := make([]templates.Role, len(rs))
	for i, r := range rs {
		out[i] = templates.Role(r)
	}
	return out
}

// Message serves a fixed friendly page (logout success, errors, 404).
func MessagePage(p *Pages, status int, code string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Error(w, r, status, code)
	})
}

// LogoutSuccess is GET /auth/logout/success.
func LogoutSuccess(p *Pages) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := "logout_success"
		if r.URL.Query().Get("provider") == "unavailable" {
			code = "logout_local"
		}
		p.Error(w, r, http.StatusOK, code)
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
		p.Error(w, r, http.StatusOK, code)
	})
}

func initials(p auth.Profile) string {
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
