package session

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
)

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

// BenchmarkCookieStore_LoadAndValidate is what every protected request
// does with the session cookie: find it, take the opened session from the
// cache (the browser sent this value before), check its absolute and idle
// limits.
func BenchmarkCookieStore_LoadAndValidate(b *testing.B) {
	s := benchSession(b)
	now := time.Unix(s.LastSeen+10, 0)
	st := benchStore(b, now)
	r := sessionRequest(b, st, s)
	b.ReportAllocs()
	for b.Loop() {
		got, err := st.Load(r)
		if err != nil || got.Expired(now, 30*time.Minute) {
			b.Fatalf("Load = %v, %v", got, err)
		}
	}
}

// BenchmarkCookieStore_LoadAndValidateUncached is the first request with a
// cookie value: open it (AES-256-GCM), inflate it, decode it, check it.
func BenchmarkCookieStore_LoadAndValidateUncached(b *testing.B) {
	s := benchSession(b)
	now := time.Unix(s.LastSeen+10, 0)
	st := benchStore(b, now)
	r := sessionRequest(b, st, s)
	opened := st.(*gorillaStore).opened
	b.ReportAllocs()
	for b.Loop() {
		clear(opened.m)
		got, err := st.Load(r)
		if err != nil || got.Expired(now, 30*time.Minute) {
			b.Fatalf("Load = %v, %v", got, err)
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

func BenchmarkDecodeSession(b *testing.B) {
	data := realPayload(b)
	b.Run("Fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var s Session
			if err := decodeSession(data, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EncodingJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var s Session
			if err := json.Unmarshal(data, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkCookieValue(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", "_ga=GA1.1.123456789.1700000000; theme=dark; gatehouse="+strings.Repeat("x", 1900)+"; lang=en")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := cookieValue(r, "gatehouse"); !ok {
			b.Fatal("no cookie")
		}
	}
}
