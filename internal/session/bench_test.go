package session

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// realPayload is a session as a sign-in at the development provider makes
// it (its tokens are signed by a throwaway key).
func realPayload(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/session.json")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// benchSession is the session a sign-in at the development provider makes.
func benchSession(b *testing.B) *Session {
	b.Helper()
	var s Session
	if err := json.Unmarshal(realPayload(b), &s); err != nil {
		b.Fatal(err)
	}
	return &s
}

func benchStore(b *testing.B, now time.Time) Store {
	b.Helper()
	sealer, err := seal.New("bench-session-secret-0123456789-abcdefghij", "", "session")
	if err != nil {
		b.Fatal(err)
	}
	return NewCookieStore(sealer, CookieOptions{}, func() time.Time { return now })
}

// sessionRequest is a request carrying s's cookie among a few others, as
// a browser sends it.
func sessionRequest(b *testing.B, st Store, s *Session) *http.Request {
	b.Helper()
	w := httptest.NewRecorder()
	if err := st.Save(w, httptest.NewRequest(http.MethodGet, "/", nil), s); err != nil {
		b.Fatal(err)
	}
	c := w.Result().Cookies()[0]
	r := httptest.NewRequest(http.MethodGet, "/profile", nil)
	r.Header.Set("Cookie", "_ga=GA1.1.123456789.1700000000; theme=dark; "+c.Name+"="+c.Value+"; lang=en")
	return r
}

// BenchmarkCookieStore_Open is the first request with a cookie value:
// open it (AES-256-GCM), inflate it, decode it. Later requests with the
// same value are answered by the opened-cookie cache
// (BenchmarkSessionCheck in internal/auth).
func BenchmarkCookieStore_Open(b *testing.B) {
	s := benchSession(b)
	st := benchStore(b, time.Unix(s.LastSeen+10, 0))
	r := sessionRequest(b, st, s)
	backend := st.(*gorillaStore).gs.(*cookieBackend)
	b.ReportAllocs()
	for b.Loop() {
		clear(backend.opened.m)
		if _, err := st.Load(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCookieStore_Save is sealing a session into its cookie (sign-in,
// refresh, and the once-a-minute idle stamp).
func BenchmarkCookieStore_Save(b *testing.B) {
	s := benchSession(b)
	st := benchStore(b, time.Unix(s.LastSeen, 0))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := &headerOnly{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		if err := st.Save(w, r, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(w.h.Get("Set-Cookie"))), "cookie-bytes")
}

type headerOnly struct{ h http.Header }

func (w *headerOnly) Header() http.Header         { return w.h }
func (w *headerOnly) Write(p []byte) (int, error) { return len(p), nil }
func (w *headerOnly) WriteHeader(int)             {}
