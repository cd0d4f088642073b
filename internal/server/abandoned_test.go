package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestAbandoned_ClientThatLeftIsNoOutage: a browser that navigates away,
// or a proxy that drops its auth subrequest, while Gatehouse reads the
// session from Redis cancels that read. It is not an outage of the
// session store: no 503, no ERROR line, no "unavailable" decision for the
// documented alert to fire on; the access log shows 499.
func TestAbandoned_ClientThatLeftIsNoOutage(t *testing.T) {
	t.Parallel()
	redisURL, prefix := testenv.Redis(t)
	logs := &testenv.SyncBuffer{}
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		Modify:  testenv.UseRedis(redisURL, prefix),
		Options: server.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))},
	})
	br := testenv.NewBrowser(t)
	br.Login(app, "alice", pw)
	c := br.Cookie(app.URL, "gatehouse")
	if c == nil {
		t.Fatal("no session cookie")
	}
	for _, path := range []string{"/profile", "/auth/verify", "/auth/forward"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the client has gone away (connection closed, HTTP/2 RST_STREAM)
		req := httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx)
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		w := httptest.NewRecorder()
		app.Handler().ServeHTTP(w, req)
		if w.Code != 499 {
			t.Errorf("GET %s by a client that went away = %d, want 499 (client closed, not an outage)", path, w.Code)
		}
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) || strings.Contains(logs.String(), `"auth.outcome":"unavailable"`) {
		t.Errorf("a client going away was logged as an outage:\n%s", logs.String())
	}
	// The same requests with the client still there are served.
	if r := br.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK {
		t.Fatalf("profile afterwards: %s", r)
	}
}
