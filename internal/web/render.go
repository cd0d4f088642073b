// Package web renders Gatehouse's pages (the templ components in
// templates/) and serves the pages that are not part of the auth protocol
// itself.
package web

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/a-h/templ"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/claims"
	"github.com/gatehouse/gatehouse/templates"
)

// Pages renders pages; it implements auth.Pages.
type Pages struct {
	log *slog.Logger
}

// NewPages returns the page renderer (the templates are compiled Go code:
// nothing to load or parse).
func NewPages(log *slog.Logger) *Pages {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pages{log: log}
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

// Render writes content, framed by the layout, with status and title.
func (p *Pages) Render(w http.ResponseWriter, r *http.Request, status int, title string, content templ.Component) {
	p.write(w, r, status, p.frame(r, title), content)
}

// frame is the layout's view of the request.
func (p *Pages) frame(r *http.Request, title string) templates.Frame {
	f := templates.Frame{Title: title, Path: r.URL.Path}
	if s := auth.SessionFrom(r.Context()); s != nil {
		f.SignedIn = true
		f.UserName = displayName(claims.ProfileOf(s, "")) // the name only: no project needed
	}
	return f
}

// write renders the page to a buffer first, so a render error becomes a
// clean 500 instead of half a page.
func (p *Pages) write(w http.ResponseWriter, r *http.Request, status int, f templates.Frame, content templ.Component) {
	var buf bytes.Buffer
	// templ stops rendering when its context is done; a client that goes
	// away mid-render is not a render error worth a log line, and the
	// write afterwards fails quietly anyway.
	if err := templates.Layout(f, content).Render(context.WithoutCancel(r.Context()), &buf); err != nil {
		p.log.ErrorContext(r.Context(), "render page", "page", f.Title, "error", err.Error())
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

// Message shows the friendly page for a code: a failure, a notice such as
// "signed out", or a 404.
func (p *Pages) Message(w http.ResponseWriter, r *http.Request, status int, code string) {
	m := messageFor(code, status)
	p.Render(w, r, status, m.Title, templates.MessagePage(m))
}

// MessageAt is Message for a page shown on another host than Gatehouse's
// own (a forward-auth answer that the proxy hands to the browser as it is,
// on the protected app's host): its links and stylesheet point back to
// origin, Gatehouse's public origin, and its Content-Security-Policy
// allows that origin's stylesheet and images and nothing else.
func (p *Pages) MessageAt(w http.ResponseWriter, r *http.Request, status int, code, origin string) {
	m := messageFor(code, status)
	actions := make([]Action, len(m.Actions))
	for i, a := range m.Actions {
		a.Href = origin + a.Href
		actions[i] = a
	}
	m.Actions = actions
	f := p.frame(r, m.Title)
	f.Origin, f.Path = origin, ""
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src "+origin+"; img-src "+origin+" data:; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	p.write(w, r, status, f, templates.MessagePage(m))
}

// EndSession shows the page that posts the sign-out to the provider.
func (p *Pages) EndSession(w http.ResponseWriter, r *http.Request, action string, fields []auth.Field) {
	v := templates.EndSession{Action: action, Fields: make([]templates.Field, len(fields))}
	for i, f := range fields {
		v.Fields[i] = templates.Field(f)
	}
	p.Render(w, r, http.StatusOK, "Signing out", templates.EndSessionPage(v))
}

func displayName(p claims.Profile) string {
	switch {
	case p.Name != "":
		return p.Name
	case p.Username != "":
		return p.Username
	}
	return "your account"
}
