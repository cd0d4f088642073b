package session_test

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/session/sessiontest"
)

func sealer(t *testing.T, secret, previous string) *seal.Sealer {
	t.Helper()
	s, err := seal.New(secret, previous, "session")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCookieStore_Conformance(t *testing.T) {
	t.Parallel()
	sessiontest.Run(t, func(t *testing.T, secret, previous string, secure bool, now func() time.Time) session.Store {
		return session.NewCookieStore(sealer(t, secret, previous), session.CookieOptions{Secure: secure}, now)
	}, sessiontest.Features{})
}

func TestMemoryStore_Conformance(t *testing.T) {
	t.Parallel()
	sessiontest.Run(t, func(t *testing.T, secret, previous string, secure bool, now func() time.Time) session.Store {
		return session.NewMemoryStore(sealer(t, secret, previous), session.CookieOptions{Secure: secure}, now, 0)
	}, sessiontest.Features{ServerSide: true})
}
