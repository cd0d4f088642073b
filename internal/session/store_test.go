package session_test

import (
	"testing"
	"time"

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
