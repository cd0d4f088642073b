package session_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/session/sessiontest"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func sealer(t testing.TB, secret, previous string) *seal.Sealer {
	t.Helper()
	s, err := seal.New(secret, previous, "session")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCookieStore_Conformance(t *testing.T) {
	t.Parallel()
	sessiontest.Run(t, func(t *testing.T, secret, previous string, opts session.CookieOptions, now func() time.Time) session.Store {
		return session.NewCookieStore(sealer(t, secret, previous), opts, now)
	}, sessiontest.Features{})
}

func TestMemoryStore_Conformance(t *testing.T) {
	t.Parallel()
	sessiontest.Run(t, func(t *testing.T, secret, previous string, opts session.CookieOptions, now func() time.Time) session.Store {
		return session.NewMemoryStore(sealer(t, secret, previous), opts, now, 0)
	}, sessiontest.Features{ServerSide: true})
}

func TestRedisStore_Conformance(t *testing.T) {
	t.Parallel()
	redisURL, _ := testenv.Redis(t)
	sessiontest.Run(t, func(t *testing.T, secret, previous string, opts session.CookieOptions, now func() time.Time) session.Store {
		return newRedisStore(t, redisURL, sealer(t, secret, previous), opts, now)
	}, sessiontest.Features{ServerSide: true, Shared: true})
}

// newRedisStore returns a store with a key prefix of its own: like the
// memory store's instances, each one sees only its own sessions.
func newRedisStore(t *testing.T, redisURL string, s *seal.Sealer, opts session.CookieOptions, now func() time.Time) *session.RedisStore {
	t.Helper()
	client, err := session.NewRedisClient(redisURL, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return session.NewRedisStore(client, s, opts, now, "test:"+session.NewID()[:12]+":")
}

// Load reads a backend's session without gorilla's wrapper; the backend's
// gorilla face (sessions.Store.New, through gorilla's registry) must still
// find the same session, and nothing for a request without one.
func TestStores_GorillaNewFindsTheStoredSession(t *testing.T) {
	t.Parallel()
	redisSt, _, _ := redisStore(t)
	for name, st := range map[string]session.Store{
		"cookie": session.NewCookieStore(sealer(t, testSecret, ""), session.CookieOptions{}, time.Now),
		"memory": session.NewMemoryStore(sealer(t, testSecret, ""), session.CookieOptions{}, time.Now, 0),
		"redis":  redisSt,
	} {
		t.Run(name, func(t *testing.T) {
			s := sampleSession(time.Now(), "alice", "sid-1")
			cookie := saveTo(t, st, s)
			gs := session.GorillaStore(st)

			gsess, err := sessions.GetRegistry(requestWith(cookie)).Get(gs, cookie.Name)
			if err != nil || gsess.IsNew || gsess.ID != s.ID {
				t.Fatalf("Get() = %+v, %v; want the saved session %q", gsess, err, s.ID)
			}
			if got, ok := gsess.Values["session"].(*session.Session); !ok || got.Subject != "alice" || got.RefreshToken != s.RefreshToken {
				t.Errorf("Values[session] = %#v, want the saved session", gsess.Values["session"])
			}

			forged := &http.Cookie{Name: cookie.Name, Value: cookie.Value[:len(cookie.Value)-2] + "AA"}
			for label, r := range map[string]*http.Request{
				"no cookie": httptest.NewRequest(http.MethodGet, "/", nil),
				"forged":    requestWith(forged),
			} {
				gsess, _ := sessions.GetRegistry(r).Get(gs, cookie.Name)
				if !gsess.IsNew || gsess.Values["session"] != nil {
					t.Errorf("%s: Get() = %+v, want a new, empty session", label, gsess)
				}
			}
		})
	}
}
