package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestForwardedWarning_OnceThenAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	h := newForwardedWarning(log, trusted, clock, time.Hour).middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	send := func(remote, xff string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				send("192.168.7.7:5000", "198.51.100.1")
				send("10.1.1.1:5000", "198.51.100.1") // a listed proxy: nothing to say
				send("192.168.7.7:5000", "")          // no header: nothing to say
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(logs.String(), "not in TRUSTED_PROXIES"); n != 1 {
		t.Fatalf("400 requests with X-Forwarded-For from an unlisted peer logged %d warnings, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"peer":"192.168.7.7"`) || strings.Contains(logs.String(), "198.51.100.1") {
		t.Errorf("the warning must name the peer and not echo the header:\n%s", logs.String())
	}
	logs.Reset()
	mu.Lock()
	now = now.Add(59 * time.Minute)
	mu.Unlock()
	send("192.168.7.7:5000", "198.51.100.1")
	if logs.Len() != 0 {
		t.Fatalf("warned again within the hour:\n%s", logs.String())
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	send("203.0.113.9:5000", "198.51.100.1")
	if !strings.Contains(logs.String(), `"requests":401`) || !strings.Contains(logs.String(), "was ignored") {
		t.Fatalf("after an hour: want one warning counting the 401 requests since, saying a public peer's header is ignored:\n%s", logs.String())
	}
}

func TestForwardedWarning_UnlistedInternalProxyWithoutTrustedProxies(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	h := newForwardedWarning(slog.New(slog.NewJSONHandler(&logs, nil)), nil, time.Now, time.Hour).
		middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.244.1.5:40000"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !strings.Contains(logs.String(), "proxy not listed in TRUSTED_PROXIES") || !strings.Contains(logs.String(), "as a hint") {
		t.Fatalf("want the unlisted-proxy warning:\n%s", logs.String())
	}
}
