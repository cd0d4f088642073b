package session_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
)

const fuzzSecret = "fuzz-session-secret-0123456789abcdefgh"

var fuzzNow = time.Unix(1_800_000_000, 0)

func fuzzStores(f *testing.F) (cookie, memory session.Store, valid map[string]string, want *session.Session) {
	s, err := seal.New(fuzzSecret, "", "session")
	if err != nil {
		f.Fatal(err)
	}
	clock := func() time.Time { return fuzzNow }
	cookie = session.NewCookieStore(s, session.CookieOptions{}, clock)
	memory = session.NewMemoryStore(s, session.CookieOptions{}, clock, 0)
	issued := func() *session.Session { // a new value per store: Save remembers that it stored it
		return &session.Session{
			// Fixed, not random: each fuzzing worker process builds its own copy.
			ID: "fuzz-session-id-0123456789abcdefghijklmnopq", Subject: "fuzz-user", IDToken: "h.eyJzdWIiOiJmdXp6LXVzZXIifQ.s", AccessToken: "at",
			CreatedAt: fuzzNow.Unix(), LastSeen: fuzzNow.Unix(), ExpiresAt: fuzzNow.Add(time.Hour).Unix(),
		}
	}
	want = issued()
	valid = map[string]string{}
	for name, st := range map[string]session.Store{"cookie": cookie, "memory": memory} {
		rec := httptest.NewRecorder()
		if err := st.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), issued()); err != nil {
			f.Fatal(err)
		}
		valid[name] = rec.Result().Cookies()[0].Value
	}
	return cookie, memory, valid, want
}

func load(st session.Store, value string) (*session.Session, error) {
	r := httptest.NewRequest(http.MethodGet, "/profile", nil)
	r.AddCookie(&http.Cookie{Name: session.CookieName(false), Value: value})
	return st.Load(r)
}

// FuzzSessionCookie: any cookie value either opens as the one session that
// was really issued or is no session; never a panic, never another error,
// never a session nobody issued.
func FuzzSessionCookie(f *testing.F) {
	cookie, memory, valid, want := fuzzStores(f)
	for _, v := range valid {
		f.Add(v)
		f.Add(v[:len(v)/2])
		f.Add(v + "A")
	}
	for name, st := range map[string]session.Store{"cookie": cookie, "memory": memory} {
		if s, err := load(st, valid[name]); err != nil || s.ID != want.ID {
			f.Fatalf("%s store: the issued cookie does not open (%v): the property below would be vacuous", name, err)
		}
	}
	f.Add("")
	f.Add("AQ")
	f.Add("not-a-sealed-value")
	f.Fuzz(func(t *testing.T, value string) {
		for name, st := range map[string]session.Store{"cookie": cookie, "memory": memory} {
			s, err := load(st, value)
			if err != nil {
				if !errors.Is(err, session.ErrNoSession) {
					t.Fatalf("%s store: Load error %v, want ErrNoSession", name, err)
				}
				continue
			}
			if s.ID != want.ID || s.Subject != want.Subject {
				t.Fatalf("%s store opened a session that was never issued: %+v", name, s)
			}
		}
	})
}

// FuzzSessionPayload plays a sealed cookie with arbitrary content (as if
// the key had leaked or a bug had sealed garbage): decompression and
// decoding must hold, with bounded memory, and yield no session without an ID.
func FuzzSessionPayload(f *testing.F) {
	s, err := seal.New(fuzzSecret, "", "session")
	if err != nil {
		f.Fatal(err)
	}
	cookie, _, valid, _ := fuzzStores(f)
	plain, _, _, err := s.Open(session.CookieName(false), valid["cookie"], 0, fuzzNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add([]byte{0})
	f.Add([]byte{1})
	f.Add([]byte{2, 'x'})
	f.Add(append([]byte{0}, `{"id":"x","sub":"y","exp":1}`...))
	f.Add(append([]byte{0}, `{"id":"","sub":"y"}`...))
	f.Fuzz(func(t *testing.T, payload []byte) {
		value := s.Seal(session.CookieName(false), payload, fuzzNow)
		got, err := load(cookie, value)
		if err != nil {
			if !errors.Is(err, session.ErrNoSession) {
				t.Fatalf("Load error %v, want ErrNoSession", err)
			}
			return
		}
		if got.ID == "" {
			t.Fatalf("a session without an ID was accepted: %+v", got)
		}
	})
}
