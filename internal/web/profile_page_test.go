package web_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/web"
)

// What differs between requests (the raw-claims tab, HEAD, the session)
// differs on the page.
func TestProfile_FollowsTheRequest(t *testing.T) {
	t.Parallel()
	h := web.Profile(newPages(t), "")
	claims := map[string]any{"sub": "u1", "name": "Alice Admin"}
	first := serve(h, signedIn(t, http.MethodGet, "/profile", claims))
	again := serve(h, signedIn(t, http.MethodGet, "/profile", claims))
	if first.Code != http.StatusOK || first.Body.String() != again.Body.String() {
		t.Fatalf("the same request twice: %d, bodies equal %v", first.Code, first.Body.String() == again.Body.String())
	}
	if strings.Contains(first.Body.String(), `id="raw" open`) {
		t.Fatal("the raw claims are open without ?tab=claims")
	}
	if raw := serve(h, signedIn(t, http.MethodGet, "/profile?tab=claims", claims)); !strings.Contains(raw.Body.String(), `id="raw" open`) {
		t.Error("?tab=claims got the page rendered for the closed raw claims")
	}
	head := serve(h, signedIn(t, http.MethodHead, "/profile", claims))
	if head.Body.Len() != 0 || head.Header().Get("Content-Length") != first.Header().Get("Content-Length") {
		t.Errorf("HEAD: %d body bytes, Content-Length %q vs GET's %q", head.Body.Len(), head.Header().Get("Content-Length"), first.Header().Get("Content-Length"))
	}
	other := serve(h, signedIn(t, http.MethodGet, "/profile", map[string]any{"sub": "u1", "name": "Bob Viewer"}))
	if !strings.Contains(other.Body.String(), "Bob Viewer") || strings.Contains(other.Body.String(), "Alice Admin") {
		t.Error("another session's page shows the first one's user")
	}
}

// BenchmarkProfilePage is the profile page alone: tokens decoded, claims
// sorted and indented, page rendered (pages may cost up to 1 ms of CPU).
func BenchmarkProfilePage(b *testing.B) {
	raw, err := os.ReadFile("../session/testdata/session.json")
	if err != nil {
		b.Fatal(err)
	}
	var s session.Session
	if err := json.Unmarshal(bytes.TrimSpace(raw), &s); err != nil {
		b.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "/profile", nil)
	r = r.WithContext(auth.WithSession(r.Context(), &s))
	b.ReportAllocs()
	h := web.Profile(web.NewPages(nil), "")
	for b.Loop() {
		w := &discard{h: http.Header{}}
		h.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(s int)           { d.status = s }
