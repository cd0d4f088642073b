package testenv

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/claims"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/session"
)

// RecordedSession saves into st the session of a real sign-in at the
// development provider (alice: admin and viewer; recorded in
// internal/session/testdata/session.json), fresh at now (roles too): an hour to live,
// its access token valid half an hour, no idle stamp due. It returns the
// cookie a browser would send, for benchmarks of the session check.
func RecordedSession(tb testing.TB, st session.Store, now time.Time) *http.Cookie {
	tb.Helper()
	_, here, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "session", "testdata", "session.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var s session.Session
	if err := json.Unmarshal(bytes.TrimSpace(raw), &s); err != nil {
		tb.Fatal(err)
	}
	s.ID = session.NewID()
	s.CreatedAt, s.LastSeen, s.ExpiresAt, s.AccessExpiry = now.Unix(), now.Unix(), now.Add(time.Hour).Unix(), now.Add(30*time.Minute).Unix()
	// A sign-in reads the roles from userinfo (claims.SessionRoles), and
	// they are fresh at now, so no decision re-reads them from a provider
	// the benchmarks do not have. The recording predates that: its roles
	// are in the ID token alone, and go into userinfo here.
	info := map[string]any{}
	if err := json.Unmarshal(s.Userinfo, &info); err != nil {
		tb.Fatal(err)
	}
	info[devidp.ClaimRoles] = claims.IDTokenClaims(s.IDToken)[devidp.ClaimRoles]
	if s.Userinfo, err = json.Marshal(info); err != nil {
		tb.Fatal(err)
	}
	s.RolesAt = now.Unix()
	w := httptest.NewRecorder()
	if err := st.Save(w, httptest.NewRequest(http.MethodGet, "/", nil), &s); err != nil {
		tb.Fatal(err)
	}
	return w.Result().Cookies()[0]
}

// HeaderWriter is the cheapest ResponseWriter that keeps headers and the
// status: benchmarks of handlers count the handler's allocations, not a
// recorder's.
type HeaderWriter struct {
	H      http.Header
	Status int
}

// NewHeaderWriter returns an empty HeaderWriter.
func NewHeaderWriter() *HeaderWriter { return &HeaderWriter{H: http.Header{}} }

func (w *HeaderWriter) Header() http.Header         { return w.H }
func (w *HeaderWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *HeaderWriter) WriteHeader(s int)           { w.Status = s }

// Reset forgets the last answer.
func (w *HeaderWriter) Reset() { clear(w.H); w.Status = 0 }

// Code is the status net/http would send: 200 when the handler set none.
func (w *HeaderWriter) Code() int {
	if w.Status == 0 {
		return http.StatusOK
	}
	return w.Status
}
