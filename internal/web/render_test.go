package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/a-h/templ"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/redirect"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/web"
)

// evil is what a user can put in their own name, metadata or a custom claim
// at the provider; escaped is how it must reach the page.
const (
	evil    = `<script>alert(1)</script>"'&`
	escaped = `&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;`
)

func newPages(t *testing.T) *web.Pages {
	t.Helper()
	return web.NewPages(slog.New(slog.DiscardHandler))
}

// signedIn is a request carrying a session whose (already verified, then
// sealed) ID token has claims; claims.ProfileOf reads the payload only.
func signedIn(t *testing.T, method, target string, claims map[string]any) *http.Request {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	s := &session.Session{ID: "s", Subject: "u1", IDToken: "e30." + base64.RawURLEncoding.EncodeToString(b) + ".sig", CreatedAt: 1, ExpiresAt: 2}
	r := httptest.NewRequest(method, target, nil)
	return r.WithContext(auth.WithSession(r.Context(), s))
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestPages_EscapeUserValues(t *testing.T) {
	t.Parallel()
	p := newPages(t)
	claims := map[string]any{
		"name":               evil,
		"email":              evil,
		"preferred_username": evil,
		"custom":             evil,
		"urn:zitadel:iam:user:resourceowner:name":           evil,
		"urn:zitadel:iam:user:resourceowner:primary_domain": evil,
		"urn:zitadel:iam:user:metadata":                     map[string]any{evil: base64.StdEncoding.EncodeToString([]byte(evil))},
		"urn:zitadel:iam:org:project:roles":                 map[string]any{"admin": map[string]any{"1": evil}, evil: map[string]any{"1": evil}},
	}
	cases := []struct {
		name     string
		h        http.Handler
		r        *http.Request
		contexts []string // where the escaped value must appear
	}{
		{"ProfileText", web.Profile(p, ""), signedIn(t, http.MethodGet, "/profile", claims), []string{
			"<h1>" + escaped + "</h1>",                     // name
			`<p class="muted email">` + escaped + "</p>",   // e-mail
			"<dd>" + escaped + "</dd>",                     // username
			`<span class="badge">` + escaped + "</span>",   // role name
			`<li><code>` + escaped + "</code> " + escaped,  // metadata key and value
			`<span class="muted">· ` + escaped + "</span>", // organisation domain
			"<td>" + escaped,                               // custom claim value
		}},
		{"AdminText", web.Admin(p, "admin", ""), signedIn(t, http.MethodGet, "/admin", claims), []string{
			"<dd>" + escaped + " · " + escaped + "</dd>",           // organisation
			`<span class="badge">` + escaped + "</span>",           // role name
			`<span class="muted small">` + escaped + " (1)</span>", // granting organisation
		}},
		{"LayoutUserName", web.Landing(p), signedIn(t, http.MethodGet, "/", claims), []string{
			"Signed in as <strong>" + escaped + "</strong>",
		}},
		{"SignInCallbackAttribute", web.SignIn(p, ownPages), httptest.NewRequest(http.MethodGet, "/auth/signin?callbackUrl="+url.QueryEscape("/x"+evil), nil), []string{
			`<input type="hidden" name="callbackUrl" value="/x` + escaped + `">`,
		}},
		{"EndSessionFieldAttributes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.EndSession(w, r, "https://idp.example/end", []auth.Field{{Name: evil, Value: evil}})
		}), httptest.NewRequest(http.MethodPost, "/auth/logout", nil), []string{
			`<input type="hidden" name="` + escaped + `" value="` + escaped + `">`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := serve(tc.h, tc.r)
			body := w.Body.String()
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, body:\n%s", w.Code, body)
			}
			if strings.Contains(body, "<script>alert") || strings.Contains(body, `"'&`) {
				t.Errorf("unescaped value in page:\n%s", body)
			}
			for _, want := range tc.contexts {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %s\n%s", want, body)
				}
			}
		})
	}
}

func TestEndSession_RefusesScriptActions(t *testing.T) {
	t.Parallel()
	p := newPages(t)
	cases := []struct{ action, want string }{
		{"https://idp.example/oidc/v1/end_session?a=1&b=2", `action="https://idp.example/oidc/v1/end_session?a=1&amp;b=2"`},
		{"http://localhost:9998/end", `action="http://localhost:9998/end"`},
		{"javascript:alert(1)", `action="about:invalid#TemplFailedSanitizationURL"`},
		{"JavaScript:alert(1)", `action="about:invalid#TemplFailedSanitizationURL"`},
		{" javascript:alert(1)", `action="about:invalid#TemplFailedSanitizationURL"`},
		{"data:text/html,<script>alert(1)</script>", `action="about:invalid#TemplFailedSanitizationURL"`},
		{"vbscript:msgbox", `action="about:invalid#TemplFailedSanitizationURL"`},
	}
	for _, tc := range cases {
		t.Run(tc.action, func(t *testing.T) {
			t.Parallel()
			w := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p.EndSession(w, r, tc.action, []auth.Field{{Name: "state", Value: "s"}})
			}), httptest.NewRequest(http.MethodPost, "/auth/logout", nil))
			body := w.Body.String()
			if !strings.Contains(body, `<form method="post" `+tc.want+` id="end-session"`) {
				t.Errorf("end-session form: want %s in\n%s", tc.want, body)
			}
			if l := strings.ToLower(body); strings.Contains(l, "script:") || strings.Contains(l, "data:") {
				t.Errorf("script URL emitted:\n%s", body)
			}
		})
	}
}

// A component that fails half-way must not leave half a page: the buffer
// is discarded and the client gets a plain 500.
func TestRender_ErrorIsClean500(t *testing.T) {
	t.Parallel()
	p := newPages(t)
	failing := templ.ComponentFunc(func(_ context.Context, w io.Writer) error {
		_, _ = io.WriteString(w, "<p>half")
		return errors.New("broken")
	})
	w := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Render(w, r, http.StatusOK, "Broken", failing)
	}), httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "half") || strings.Contains(w.Body.String(), "<html") {
		t.Fatalf("status %d, body %q: want a plain 500", w.Code, w.Body.String())
	}
}

func TestRender_HeadHasLengthAndNoBody(t *testing.T) {
	t.Parallel()
	p := newPages(t)
	get := serve(web.Landing(p), httptest.NewRequest(http.MethodGet, "/", nil))
	head := serve(web.Landing(p), httptest.NewRequest(http.MethodHead, "/", nil))
	if get.Code != http.StatusOK || head.Code != http.StatusOK {
		t.Fatalf("status GET %d, HEAD %d", get.Code, head.Code)
	}
	if n := get.Body.Len(); n == 0 || get.Header().Get("Content-Length") != strconv.Itoa(n) || head.Header().Get("Content-Length") != strconv.Itoa(n) {
		t.Errorf("Content-Length GET %q, HEAD %q, body %d bytes", get.Header().Get("Content-Length"), head.Header().Get("Content-Length"), n)
	}
	if head.Body.Len() != 0 {
		t.Errorf("HEAD body = %d bytes, want none", head.Body.Len())
	}
	if ct := get.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
}

// aria-current marks the page the navigation link points to, and only it.
func TestLayout_MarksCurrentNavigationLink(t *testing.T) {
	t.Parallel()
	p := newPages(t)
	claims := map[string]any{"name": "Alice", "urn:zitadel:iam:org:project:roles": map[string]any{"admin": map[string]any{"1": "a"}}}
	cases := []struct {
		path string
		h    http.Handler
		want string
	}{
		{"/", web.Landing(p), `<a class="brand" href="/" aria-current="page">`},
		{"/profile", web.Profile(p, ""), `<a class="nav-link" href="/profile" aria-current="page">Profile</a>`},
		{"/admin", web.Admin(p, "admin", ""), `<a class="nav-link" href="/admin" aria-current="page">Admin</a>`},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			body := serve(tc.h, signedIn(t, http.MethodGet, tc.path, claims)).Body.String()
			if !strings.Contains(body, tc.want) || strings.Count(body, `aria-current="page"`) != 1 {
				t.Errorf("want exactly one aria-current, on %s:\n%s", tc.want, body)
			}
		})
	}
}

// ownPages is the return-URL policy without ALLOWED_REDIRECT_HOSTS.
func ownPages(raw string) (string, bool) { return raw, redirect.IsLocalPath(raw) }

func TestSignIn_CarriesOnlyAcceptedReturnURLs(t *testing.T) {
	t.Parallel()
	p := newPages(t)
	policy, err := redirect.New("https://login.example.com/auth/callback", []redirect.HostPattern{{Name: "app.example.com"}}, "/profile")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ query, want string }{
		{"rd=" + url.QueryEscape("https://app.example.com/d/1?x=2"), `value="https://app.example.com/d/1?x=2"`},
		{"callbackUrl=%2Fadmin", `value="/admin"`},
		{"rd=" + url.QueryEscape("https://evil.example/"), ""},
		{"rd=" + url.QueryEscape("//evil.example/"), ""},
	} {
		body := serve(web.SignIn(p, policy.Resolve), httptest.NewRequest(http.MethodGet, "/auth/signin?"+tc.query, nil)).Body.String()
		hidden := strings.Contains(body, `name="callbackUrl"`)
		if tc.want == "" && hidden || tc.want != "" && !strings.Contains(body, tc.want) {
			t.Errorf("?%s: want %q in the form (none when empty), page:\n%s", tc.query, tc.want, body)
		}
	}
}

func TestMessageAt_PointsBackToGatehouse(t *testing.T) {
	t.Parallel()
	p := newPages(t)
	w := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.MessageAt(w, r, http.StatusForbidden, auth.ReasonForbidden, "https://login.example.com")
	}), httptest.NewRequest(http.MethodGet, "/auth/forward", nil))
	body := w.Body.String()
	if w.Code != http.StatusForbidden {
		t.Fatalf("status %d", w.Code)
	}
	for _, want := range []string{`href="https://login.example.com/static/app.css"`, `href="https://login.example.com/profile"`, "You do not have access"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `href="/`) || strings.Contains(body, `src="/`) || strings.Contains(body, "<form") {
		t.Errorf("page on the app's host has a relative link or a form:\n%s", body)
	}
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "style-src https://login.example.com;") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

func TestLogoutConfirm_PostsSameOrigin(t *testing.T) {
	t.Parallel()
	body := serve(web.LogoutConfirm(newPages(t)), httptest.NewRequest(http.MethodGet, "/auth/logout", nil)).Body.String()
	if !strings.Contains(body, `<form method="post" action="/auth/logout">`) || !strings.Contains(body, `id="signout"`) {
		t.Fatalf("no sign-out form:\n%s", body)
	}
}
