package bearer_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/bearer"
)

// benchFixture is a verifier on the in-process provider with one JWT
// access token and one opaque token, each judged once already.
func benchFixture(b *testing.B) (f *fixture, jwt, opaque string) {
	b.Helper()
	tracing.Store(false) // benchmarks run after every test
	f = setup(b, fixtureOptions{})
	jwt = f.token(b, self).AccessToken
	opaque = f.token(b, cli).AccessToken
	for _, tok := range []string{jwt, opaque} {
		if res := f.v.Verify(context.Background(), "Bearer "+tok); res.Outcome != bearer.Allowed {
			b.Fatalf("warm-up: %v %q", res.Outcome, res.Reason)
		}
	}
	return f, jwt, opaque
}

func benchVerify(b *testing.B, v *bearer.Verifier, header string, wantCached bool) {
	b.Helper()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := v.Verify(ctx, header); res.Outcome != bearer.Allowed || res.Cached != wantCached {
			b.Fatalf("%v cached %v", res.Outcome, res.Cached)
		}
	}
}

// BenchmarkVerify_JWT is a JWT access token used again, as API clients
// use one token for many requests: the verified result is reused.
func BenchmarkVerify_JWT(b *testing.B) {
	f, jwt, _ := benchFixture(b)
	benchVerify(b, f.v, "Bearer "+jwt, true)
}

// BenchmarkVerify_JWT_Uncached verifies the token in full every time
// (parse, claims, RS256 against the cached key set): the cost of a JWT's
// first request, and what the cache of verified JWTs saves.
func BenchmarkVerify_JWT_Uncached(b *testing.B) {
	f, jwt, _ := benchFixture(b)
	bearer.DisableJWTCache(f.v)
	benchVerify(b, f.v, "Bearer "+jwt, false)
}

// BenchmarkVerify_OpaqueCached is an opaque token whose introspection
// answer is cached: hash, read-locked map lookup, expiry check.
func BenchmarkVerify_OpaqueCached(b *testing.B) {
	f, _, opaque := benchFixture(b)
	benchVerify(b, f.v, "Bearer "+opaque, true)
}

// BenchmarkDecision_HTTP puts the verifier behind net/http on loopback,
// as a decision endpoint will be, next to a bare handler serving the same
// answer. On a shared machine, load drifts between sub-benchmarks run one
// after another, and wall time counts other processes' work: so each
// iteration sends a batch to every handler in turn, and the process's own
// CPU time per request (client and server, as in the load tool) gives the
// ratios, the throughput ratios of a CPU-bound replica ("jwt/bare" =
// bare's CPU per request / a JWT decision's).
func BenchmarkDecision_HTTP(b *testing.B) {
	f, jwt, opaque := benchFixture(b)
	uncached, err := bearer.New(bearer.Config{Issuer: f.idp.URL, Audiences: []string{"gatehouse-test"}, CacheTTL: time.Minute}, f.provider)
	if err != nil {
		b.Fatal(err)
	}
	bearer.DisableJWTCache(uncached)
	decide := func(v *bearer.Verifier) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res, ok := v.VerifyRequest(r)
			if !ok || res.Outcome != bearer.Allowed {
				w.Header().Set("WWW-Authenticate", res.WWWAuthenticate())
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("X-Auth-Request-User", res.Identity.Subject)
			_, _ = io.WriteString(w, "ok")
		})
	}
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Auth-Request-User", "300000000000000001")
		_, _ = io.WriteString(w, "ok")
	})
	// Each decision is compared with a bare handler receiving the same
	// request (the same Authorization header): parsing a long header is
	// net/http's work, not the verifier's.
	kinds := []struct {
		name    string
		handler http.Handler
		token   string
		bare    int // index of the bare run with the same header; -1 for a bare run
		url     string
		spent   time.Duration // process CPU time
		n       int
	}{
		{name: "bare_jwt_header", handler: bare, token: jwt, bare: -1},
		{name: "bare_opaque_header", handler: bare, token: opaque, bare: -1},
		{name: "jwt", handler: decide(f.v), token: jwt, bare: 0},
		{name: "jwt_uncached", handler: decide(uncached), token: jwt, bare: 0},
		{name: "opaque_cached", handler: decide(f.v), token: opaque, bare: 1},
	}
	for i := range kinds {
		srv := httptest.NewServer(kinds[i].handler)
		defer srv.Close()
		kinds[i].url = srv.URL + "/api"
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	const workers, perWorker = 4, 16 // a batch: 64 requests, 4 at a time (2 cores)
	batch := func(url, token string) {
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				for range perWorker {
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range kinds {
			start := cpuTime(b)
			batch(kinds[i].url, kinds[i].token)
			kinds[i].spent += cpuTime(b) - start
			kinds[i].n += workers * perWorker
		}
	}
	perRequest := func(i int) float64 { return float64(kinds[i].spent) / float64(kinds[i].n) }
	for i := range kinds {
		b.ReportMetric(perRequest(i)/1e3, "cpu-µs/req_"+kinds[i].name)
		if j := kinds[i].bare; j >= 0 {
			b.ReportMetric(perRequest(j)/perRequest(i), kinds[i].name+"/bare")
		}
	}
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCacheEntryMemory reports the heap each cached verdict holds
// (an opaque token's identity with a few roles), for the cache bound.
func BenchmarkCacheEntryMemory(b *testing.B) {
	f, _, opaque := benchFixture(b)
	_ = opaque
	const n = 2000
	tokens := make([]string, n)
	for i := range tokens {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		tokens[i] = sign(b, f, map[string]any{
			"iss": f.idp.URL, "sub": fmt.Sprintf("3%017d", i), "aud": []string{"gatehouse-test", "200000000000000001"},
			"client_id": "api-cli", "exp": time.Now().Add(time.Hour).Unix(), "jti": fmt.Sprintf("%x", sum[:8]),
			"email": fmt.Sprintf("user%d@demo.gatehouse.localhost", i), "preferred_username": fmt.Sprintf("user%d", i),
			"urn:zitadel:iam:user:resourceowner:id": "100000000000000001",
			"urn:zitadel:iam:org:project:roles": map[string]any{
				"admin":  map[string]any{"100000000000000001": "demo.gatehouse.localhost"},
				"viewer": map[string]any{"100000000000000001": "demo.gatehouse.localhost"},
			},
		})
	}
	for b.Loop() {
		v, err := bearer.New(bearer.Config{Issuer: f.idp.URL, Audiences: []string{"gatehouse-test"}, CacheTTL: time.Minute}, f.provider)
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, tok := range tokens {
			if res := v.Verify(context.Background(), "Bearer "+tok); res.Outcome != bearer.Allowed {
				b.Fatalf("%v %q", res.Outcome, res.Reason)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if bearer.CacheLen(v) != n {
			b.Fatalf("cache holds %d, want %d", bearer.CacheLen(v), n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
		runtime.KeepAlive(v)
	}
}
