package session_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

const testSecret = "redis-test-secret-0123456789abcdefghij"

func sampleSession(now time.Time, sub, sid string) *session.Session {
	return &session.Session{
		ID: session.NewID(), Subject: sub, ProviderSID: sid,
		IDToken: "eyJhbGciOiJSUzI1NiJ9.e30.sig", AccessToken: "access-token-value", RefreshToken: "refresh-token-value",
		TokenType: "Bearer", AccessExpiry: now.Add(5 * time.Minute).Unix(),
		Userinfo:  []byte(`{"sub":"` + sub + `","name":"A"}`),
		CreatedAt: now.Unix(), LastSeen: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix(),
	}
}

func saveTo(t testing.TB, st session.Store, s *session.Session) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := st.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), s); err != nil {
		t.Fatalf("Save() error = %v", err)
	}
	return rec.Result().Cookies()[0]
}

// redisStore is a Redis store on the tests' Redis with a prefix of its
// own, and its client.
func redisStore(t *testing.T) (*session.RedisStore, *redis.Client, string) {
	t.Helper()
	redisURL, prefix := testenv.Redis(t)
	client, err := session.NewRedisClient(redisURL, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return session.NewRedisStore(client, sealer(t, testSecret, ""), session.CookieOptions{}, time.Now, prefix), client, prefix
}

func requestWith(c *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	return r
}

func TestRedisStore_RecordIsSealedWithTTLOfRemainingLifetime(t *testing.T) {
	t.Parallel()
	st, client, prefix := redisStore(t)
	now := time.Now()
	// The subject and provider session ID are unique to this run: the KEYS
	// below search the whole server, which other tests and runs share.
	run := session.NewID()[:8]
	sub, sid := "user-ttl-"+run, "sid-ttl-"+run
	s := sampleSession(now, sub, sid)
	s.ExpiresAt = now.Add(40 * time.Minute).Unix()
	c := saveTo(t, st, s)
	if len(c.Value) >= 200 || strings.Contains(c.Value, s.ID) {
		t.Errorf("cookie is %d bytes (want < 200) or shows the session ID", len(c.Value))
	}
	ctx := context.Background()
	rec := prefix + "s:" + s.ID
	ttl := client.TTL(ctx, rec).Val()
	if ttl < 39*time.Minute || ttl > 40*time.Minute {
		t.Errorf("record TTL = %v, want the remaining 40m", ttl)
	}
	for _, idx := range []string{prefix + "sid:" + sid, prefix + "sub:" + sub} {
		if got := client.TTL(ctx, idx).Val(); got < ttl-time.Second {
			t.Errorf("index %s TTL = %v, want at least the record's %v", idx, got, ttl)
		}
	}
	raw := client.HGet(ctx, rec, "d").Val()
	for _, secret := range []string{s.AccessToken, s.RefreshToken, s.IDToken, sub} {
		if strings.Contains(raw, secret) {
			t.Errorf("record payload shows %q in clear", secret)
		}
	}
	// Every key the store wrote carries the prefix.
	keys := client.Keys(ctx, "*"+s.ID+"*").Val()
	keys = append(keys, client.Keys(ctx, "*"+sid+"*").Val()...)
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("key %q lacks the prefix %q", k, prefix)
		}
	}
	// A record copied under another session's key does not open there.
	other := sampleSession(now, "user-other", "sid-other")
	oc := saveTo(t, st, other)
	client.HSet(ctx, prefix+"s:"+other.ID, "d", raw)
	if _, err := st.Load(requestWith(oc)); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("a record moved to another key opened: %v", err)
	}
	// Another prefix is another namespace.
	st2 := session.NewRedisStore(client, sealer(t, testSecret, ""), session.CookieOptions{}, time.Now, prefix+"other:")
	if _, err := st2.Load(requestWith(c)); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("a store with another prefix loaded the session: %v", err)
	}
}

func TestRedisStore_OutageIsUnavailableAndRecoversWithoutRestart(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	client, err := session.NewRedisClient(srv.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	st := session.NewRedisStore(client, sealer(t, testSecret, ""), session.CookieOptions{}, time.Now, "gh:")
	ctx := context.Background()
	now := time.Now()
	c := saveTo(t, st, sampleSession(now, "u", "s"))

	srv.Stop()
	start := time.Now()
	if _, err := st.Load(requestWith(c)); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Load() during outage error = %v, want ErrUnavailable", err)
	}
	if err := st.Save(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), sampleSession(now, "u", "s")); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Save() during outage error = %v, want ErrUnavailable", err)
	}
	if err := st.Ping(ctx); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Ping() during outage error = %v, want ErrUnavailable", err)
	}
	if _, err := st.DeleteBySubject(ctx, "u"); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("DeleteBySubject() during outage error = %v, want ErrUnavailable", err)
	}
	if _, _, err := st.TryLock(ctx, "x", time.Second); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("TryLock() during outage error = %v, want ErrUnavailable", err)
	}
	if _, err := st.MarkOnce(ctx, "k", now.Add(time.Minute)); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("MarkOnce() during outage error = %v, want ErrUnavailable", err)
	}
	t.Logf("six calls against a stopped Redis took %v", time.Since(start))

	srv.Start() // empty: no persistence, as a restarted cache pod
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("Ping() after Redis returned: %v", err)
	}
	if _, err := st.Load(requestWith(c)); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Load() of a session lost with Redis's memory error = %v, want ErrNoSession", err)
	}
	c2 := saveTo(t, st, sampleSession(now, "u", "s"))
	if _, err := st.Load(requestWith(c2)); err != nil {
		t.Errorf("Load() of a session created after recovery: %v", err)
	}
}

func TestNewRedisClient_URLPasswordAndTLS(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t, "--requirepass", "from-a-secret")
	ctx := context.Background()
	for _, tc := range []struct {
		name, url, password string
		ok                  bool
	}{
		{"password from REDIS_PASSWORD", srv.URLWithPassword(""), "from-a-secret", true},
		{"password in the URL", srv.URLWithPassword("from-a-secret"), "", true},
		{"REDIS_PASSWORD wins over the URL", srv.URLWithPassword("wrong"), "from-a-secret", true},
		{"no password", srv.URLWithPassword(""), "", false},
	} {
		client, err := session.NewRedisClient(tc.url, tc.password)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		err = client.Ping(ctx).Err()
		client.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Ping() error = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}

	tlsClient, err := session.NewRedisClient("rediss://cache.example:6380/2", "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer tlsClient.Close()
	if o := tlsClient.Options(); o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example" || o.DB != 2 || o.Addr != "cache.example:6380" {
		t.Errorf("rediss:// options: TLS=%v addr=%s db=%d", o.TLSConfig != nil, o.Addr, o.DB)
	}
	if _, err := session.NewRedisClient("redis://:secret-pw@host:notaport/0", ""); err == nil || strings.Contains(err.Error(), "secret-pw") {
		t.Errorf("bad URL error = %v; want an error that does not quote the password", err)
	}
}

// BenchmarkRedisStore_10000Sessions creates 10,000 sessions of ZITADEL's
// size in a private Redis and reports Redis memory per session (INFO
// memory) and this process's RSS. A load figure, not a timed test.
func BenchmarkRedisStore_10000Sessions(b *testing.B) {
	srv := testenv.StartRedisServer(b)
	client, err := session.NewRedisClient(srv.URL(), "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	ctx := context.Background()
	now := time.Now()
	const n = 10_000
	// A ZITADEL-sized session: ~1 KB ID token and ~0.9 KB JWT access
	// token (random base64, which compresses as poorly as real tokens),
	// userinfo with roles and metadata: about 2.8 KB of JSON in all.
	info := `{"name":"Alice Admin","email":"alice@example.com","urn:zitadel:iam:org:project:roles":{"admin":{"1":"d"},"viewer":{"1":"d"}},"urn:zitadel:iam:user:metadata":{"team":"cGxhdGZvcm0="}}`
	token := func(n int) string {
		buf := make([]byte, n)
		_, _ = rand.Read(buf)
		return base64.RawURLEncoding.EncodeToString(buf)
	}
	var perSession float64
	for b.Loop() {
		if err := client.FlushAll(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		base := usedMemory(b, srv)
		st := session.NewRedisStore(client, sealer(b, testSecret, ""), session.CookieOptions{}, time.Now, "gatehouse:")
		for i := range n {
			s := sampleSession(now, "user-"+strconv.Itoa(i%2000), "sid-"+strconv.Itoa(i))
			s.IDToken, s.AccessToken, s.RefreshToken, s.Userinfo = token(760), token(680), token(48), []byte(info)
			saveTo(b, st, s)
		}
		perSession = float64(usedMemory(b, srv)-base) / n
	}
	if got := client.DBSize(ctx).Val(); got < n {
		b.Fatalf("Redis holds %d keys, want at least %d", got, n)
	}
	b.ReportMetric(perSession, "redis-B/session")
	b.ReportMetric(float64(rssBytes(b))/(1<<20), "app-RSS-MiB")
}

func usedMemory(b *testing.B, srv *testenv.RedisServer) int64 {
	b.Helper()
	info, err := srv.Command("INFO", "memory")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("INFO memory has no used_memory")
	return 0
}

func rssBytes(b *testing.B) int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// A session Redis could not read back (its JSON over the inflate limit) is
// refused when it is saved or put, not stored and then lost at every load.
func TestRedisStore_RefusesSessionsTooLargeToReadBack(t *testing.T) {
	t.Parallel()
	st, client, prefix := redisStore(t)
	now := time.Now()

	fits := sampleSession(now, "user-big", "sid-big")
	fits.Userinfo = []byte(`{"blob":"` + strings.Repeat("x", 60<<10) + `"}`)
	c := saveTo(t, st, fits)
	if got, err := st.Load(requestWith(c)); err != nil || len(got.Userinfo) != len(fits.Userinfo) {
		t.Fatalf("a 60 KiB session does not load back: %v", err)
	}

	tooBig := sampleSession(now, "user-huge", "sid-huge")
	tooBig.Userinfo = []byte(`{"blob":"` + strings.Repeat("x", 70<<10) + `"}`)
	rec := httptest.NewRecorder()
	if err := st.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), tooBig); !errors.Is(err, session.ErrTooLarge) {
		t.Fatalf("Save() of a 70 KiB session = %v, want ErrTooLarge", err)
	}
	if len(rec.Result().Cookies()) != 0 || client.Exists(context.Background(), prefix+"s:"+tooBig.ID).Val() != 0 {
		t.Error("a refused session left a cookie or a record")
	}
	loaded, err := st.Load(requestWith(c))
	if err != nil {
		t.Fatal(err)
	}
	loaded.Userinfo = tooBig.Userinfo
	if err := st.Put(context.Background(), loaded); !errors.Is(err, session.ErrTooLarge) {
		t.Errorf("Put() of a 70 KiB session = %v, want ErrTooLarge", err)
	}
	if got, err := st.Load(requestWith(c)); err != nil || len(got.Userinfo) != len(fits.Userinfo) {
		t.Errorf("after a refused Put the session no longer loads as it was: %v", err)
	}
}
