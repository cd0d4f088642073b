// Package web renders Gatehouse's pages from the embedded templates and
// serves the pages that are not part of the auth protocol itself.
package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/templates"
)

// Pages renders templates; it implements auth.Pages.
type Pages struct {
	pages map[string]*template.Template
	log   *slog.Logger
	bufs  sync.Pool
}

// View is what every template receives.
type View struct {
	SignedIn bool
	UserName string
	Path     string // the request's path, to mark the current navigation link
	Data     any
}

var pageNames = []string{"index", "signin", "profile", "admin", "message", "endsession"}

// NewPages parses the templates once, at start-up.
func NewPages(log *slog.Logger) (*Pages, error) {
	p := &Pages{pages: map[string]*template.Template{}, log: log}
	p.bufs.New = func() any { return new(bytes.Buffer) }
	for _, name := range pageNames {
		t, err := template.New("layout").ParseFS(templates.FS, "layout.html", name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		p.pages[name] = t
	}
	return p, nil
}

// Static serves the embedded static files.
func Static() http.Handler {
	sub, err := fs.Sub(templates.FS, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the folder
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// Favicon answers /favicon.ico, which browsers ask for on pages that name
// no icon (the JSON of /auth/userinfo): the SVG icon instead of a 404.
func Favicon() http.Handler {
	icon, err := fs.ReadFile(templates.FS, "static/favicon.svg")
	if err != nil {
		panic(err) // the embed directive guarantees the file
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.Header().Set("Content-Length", strconv.Itoa(len(icon)))
		if r.Method != http.MethodHead {
			_, _ = w.Write(icon)
		}
	})
}

// Render writes page with status. Rendering goes to a buffer first so a
// template error becomes a clean 500 instead of half a page.
func (p *Pages) Render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	p.render(w, r, status, page, data, nil)
}

// render is Render for a handler that has already read the user's profile
// (prof not nil), so the layout's user name does not decode the tokens again.
func (p *Pages) render(w http.ResponseWriter, r *http.Request, status int, page string, data any, prof *auth.Profile) {
	t, ok := p.pages[page]
	if !ok {
		p.log.ErrorContext(r.Context(), "unknown page", "page", page)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	v := View{Data: data, Path: r.URL.Path}
	if s := auth.SessionFrom(r.Context()); s != nil {
		v.SignedIn = true
		if prof == nil {
			pr := auth.ProfileOf(s)
			prof = &pr
		}
		v.UserName = displayName(*prof)
	}
	buf := p.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer p.bufs.Put(buf)
	if err := t.ExecuteTemplate(buf, "layout", v); err != nil {
		p.log.ErrorContext(r.Context(), "render page", "page", page, "error", err.Error())
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// Error shows the friendly page for a failure code.
func (p *Pages) Error(w http.ResponseWriter, r *http.Request, status int, code string) {
	m := messageFor(code, status)
	p.Render(w, r, status, "message", m)
}

// EndSession shows the page that posts the sign-out to the provider.
func (p *Pages) EndSession(w http.ResponseWriter, r *http.Request, action string, fields []auth.Field) {
	p.Render(w, r, http.StatusOK, "endsession", struct {
		Action string
		Fields []auth.Field
	}{action, fields})
}

func displayName(p auth.Profile) string {
	switch {
	case p.Name != "":
		return p.Name
	case p.Username != "":
		return p.Username
	}
	return "your account"
}
