package loadtest

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestFreshSession_SignsInAgainOnceTheCookieIsHalfAMinuteOld(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	logins := 0
	var fail error
	f := &freshSession{now: func() time.Time { return now }, login: func(context.Context) (string, error) {
		if fail != nil {
			return "", fail
		}
		logins++
		return "gatehouse=" + strconv.Itoa(logins), nil
	}}
	ctx := context.Background()
	step := func(d time.Duration, want string, wantLogins int) {
		t.Helper()
		now = now.Add(d)
		got, err := f.get(ctx)
		if err != nil || got != want || logins != wantLogins {
			t.Fatalf("after %v: get() = %q, %v with %d logins; want %q with %d", d, got, err, logins, want, wantLogins)
		}
	}
	step(0, "gatehouse=1", 1)
	step(29*time.Second, "gatehouse=1", 1) // still fresh
	step(time.Second, "gatehouse=2", 2)    // 30 s old: before the idle stamp's minute
	step(10*time.Second, "gatehouse=2", 2)
	if got, err := f.renew(ctx); err != nil || got != "gatehouse=3" {
		t.Fatalf("renew() = %q, %v; want a new session however young the old one", got, err)
	}
	fail = errors.New("provider down")
	now = now.Add(time.Minute)
	if got, err := f.get(ctx); err == nil || got != "" {
		t.Fatalf("get() with the login failing = %q, %v; want the error", got, err)
	}
}
