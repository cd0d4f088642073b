package session_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/session"
)

func TestMain(m *testing.M) {
	// go-redis logs every refused dial (labs starting, failovers) through
	// a process-wide logger; the tests assert on outcomes instead.
	redis.SetLogger(session.RedisLogger(slog.New(slog.DiscardHandler)))
	os.Exit(m.Run())
}
