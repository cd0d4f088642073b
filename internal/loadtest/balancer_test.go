package loadtest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestBalancer_RetriesOnlyWhatCannotRepeatAnAction holds the soak's
// balancer to its retry design: a request the instance never received
// (connection refused) goes to the other instance whatever its method; a
// request whose connection broke after it was sent is sent again only if
// it is a GET or HEAD other than the single-use callback.
func TestBalancer_RetriesOnlyWhatCannotRepeatAnAction(t *testing.T) {
	t.Parallel()
	var good atomic.Int64
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		good.Add(1)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	}))
	defer healthy.Close()
	// An instance that reads each request and then drops the connection.
	var dropped atomic.Int64
	breaking := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dropped.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer breaking.Close()
	// An address nothing listens on any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()

	through := func(first string, method, path string) (int, string) {
		t.Helper()
		b := newBalancer(2, 0)
		b.backends[0].addr, b.backends[0].ready = first, true
		b.backends[1].addr, b.backends[1].ready = strings.TrimPrefix(healthy.URL, "http://"), true
		front := httptest.NewServer(b)
		defer front.Close()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("a=1")
		}
		req, _ := http.NewRequest(method, front.URL+path, body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got)
	}
	for _, tc := range []struct {
		name, first, method, path string
		want                      int
		body                      string
	}{
		{"RefusedGET", refused, http.MethodGet, "/profile", 200, "GET /profile "},
		{"RefusedPOSTWithItsBody", refused, http.MethodPost, "/auth/logout", 200, "POST /auth/logout a=1"},
		{"RefusedCallback", refused, http.MethodGet, "/auth/callback", 200, "GET /auth/callback "},
		{"BrokenGET", strings.TrimPrefix(breaking.URL, "http://"), http.MethodGet, "/profile", 200, "GET /profile "},
		{"BrokenPOST", strings.TrimPrefix(breaking.URL, "http://"), http.MethodPost, "/auth/logout", http.StatusBadGateway, ""},
		{"BrokenCallback", strings.TrimPrefix(breaking.URL, "http://"), http.MethodGet, "/auth/callback", http.StatusBadGateway, ""},
	} {
		status, body := through(tc.first, tc.method, tc.path)
		if status != tc.want || body != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, body, tc.want, tc.body)
		}
	}
	if dropped.Load() < 3 {
		t.Errorf("the breaking instance saw %d requests, want each Broken case to have reached it", dropped.Load())
	}
}
