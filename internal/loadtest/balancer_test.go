package loadtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestBalancer_RetriesOnlyWhatCannotRepeatAnAction holds the soak's
// balancer to its retry design: a request the instance never received
// (connection refused) goes to the other instance whatever its method; a
// request whose connection broke after it was sent is sent again only if
// it is a GET or HEAD other than the single-use callback.
func TestBalancer_RetriesOnlyWhatCannotRepeatAnAction(t *testing.T) {
	t.Parallel()
	var good atomic.Int64
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		good.Add(1)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	}))
	defer healthy.Close()
	// An instance that reads each request and then drops the connection.
	var dropped atomic.Int64
	breaking := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dropped.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer breaking.Close()
	refused := testenv.RefusingAddr(t)

	through := func(first string, method, path string) (int, string) {
		t.Helper()
		b := newBalancer(2, 0)
		b.backends[0].addr, b.backends[0].ready = first, true
		b.backends[1].addr, b.backends[1].ready = strings.TrimPrefix(healthy.URL, "http://"), true
		front := httptest.NewServer(b)
		defer front.Close()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("a=1")
		}
		req, _ := http.NewRequest(method, front.URL+path, body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got)
	}
	for _, tc := range []struct {
		name, first, method, path string
		want                      int
		body                      string
	}{
		{"RefusedGET", refused, http.MethodGet, "/profile", 200, "GET /profile "},
		{"RefusedPOSTWithItsBody", refused, http.MethodPost, "/auth/logout", 200, "POST /auth/logout a=1"},
		{"RefusedCallback", refused, http.MethodGet, "/auth/callback", 200, "GET /auth/callback "},
		{"BrokenGET", strings.TrimPrefix(breaking.URL, "http://"), http.MethodGet, "/profile", 200, "GET /profile "},
		{"BrokenPOST", strings.TrimPrefix(breaking.URL, "http://"), http.MethodPost, "/auth/logout", http.StatusBadGateway, ""},
		{"BrokenCallback", strings.TrimPrefix(breaking.URL, "http://"), http.MethodGet, "/auth/callback", http.StatusBadGateway, ""},
	} {
		status, body := through(tc.first, tc.method, tc.path)
		if status != tc.want || body != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, body, tc.want, tc.body)
		}
	}
	if dropped.Load() < 3 {
		t.Errorf("the breaking instance saw %d requests, want each Broken case to have reached it", dropped.Load())
	}
}

// TestBalancer_ReadinessLikeAProbe holds the balancer's readiness checks
// to the chart's probe: an instance whose /readyz is slow once stays in
// the rotation (a busy machine is not an outage), one that stays silent
// for failedChecks checks in a row leaves it, and one that answers 503
// (draining) or refuses connections leaves it at the first check.
func TestBalancer_ReadinessLikeAProbe(t *testing.T) {
	t.Parallel()
	var status, slow atomic.Int64 // slow: the next checks to leave unanswered
	status.Store(http.StatusOK)
	release := make(chan struct{})
	defer close(release)
	inst := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Add(-1) >= 0 {
			select {
			case <-r.Context().Done(): // the check gave up
			case <-release:
			}
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer inst.Close()
	refused := testenv.RefusingAddr(t)

	b := newBalancer(2, 0)
	b.set(0, strings.TrimPrefix(inst.URL, "http://"))
	b.set(1, refused)
	b.backends[1].ready = true // as if it had been up before
	// A short timeout stands in for checkTimeout in the steps whose answer
	// never comes; every other step allows the machine plenty of time, so
	// a busy CI machine cannot turn a prompt answer or a refusal into a
	// missed one.
	short := &http.Client{Timeout: 100 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	patient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ready := func(i int) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.backends[i].ready
	}
	steps := []struct {
		name        string
		slow        int64
		status      int
		want, other bool
	}{
		{"Healthy", 0, http.StatusOK, true, false},
		{"OneSlowCheck", 1, http.StatusOK, true, false},
		{"HealthyAgain", 0, http.StatusOK, true, false},
		{"SilentOnce", 1, http.StatusOK, true, false},
		{"SilentTwice", 1, http.StatusOK, false, false},
		{"Back", 0, http.StatusOK, true, false},
		{"Draining", 0, http.StatusServiceUnavailable, false, false},
	}
	for _, st := range steps {
		slow.Store(st.slow)
		status.Store(int64(st.status))
		client := patient
		if st.slow > 0 {
			client = short
		}
		b.check(client)
		if got := ready(0); got != st.want {
			t.Errorf("%s: instance ready = %v, want %v", st.name, got, st.want)
		}
		if ready(1) != st.other {
			t.Errorf("%s: the refusing address is ready, want out of the rotation at the first check", st.name)
		}
	}
}
