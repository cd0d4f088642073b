package server_test

// Issue 19: a signed-in user is signed out only because the user or the
// identity provider ended the session, never because of a blip, a second
// replica, a fault mid-refresh or a provider that differs from ZITADEL in
// what the specifications allow.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// testSessionSecret is testenv's SESSION_SECRET.
const testSessionSecret = "test-session-secret-0123456789-abcdefghij"

// assertNotSignedOut checks that r neither sent the browser to sign in nor
// cleared its session cookie.
func assertNotSignedOut(t *testing.T, r *testenv.Response, what string) {
	t.Helper()
	if r.StatusCode == http.StatusSeeOther && strings.HasPrefix(r.Header.Get("Location"), "/auth/signin") {
		t.Fatalf("%s: %s: the user was sent to sign in", what, r)
	}
	for _, c := range r.Cookies() {
		if c.Name == "gatehouse" && c.MaxAge < 0 {
			t.Fatalf("%s: %s: the session cookie was cleared", what, r)
		}
	}
}

// eventuallyServed polls /profile until it is served, failing if the
// browser is signed out meanwhile.
func eventuallyServed(t *testing.T, br *testenv.Browser, app *testenv.App, timeout time.Duration, what string) {
	t.Helper()
	eventually(t, timeout, what, func() bool {
		r := br.Get(app.URL + "/profile")
		assertNotSignedOut(t, r, what)
		return r.StatusCode == http.StatusOK
	})
}

// waitWithin waits for wg, failing the test after timeout.
func waitWithin(t *testing.T, wg *sync.WaitGroup, timeout time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// switchableDNS is the provider client's dialer with a resolver that can
// be made to fail: a DNS outage cannot be caused for real on loopback, so
// this fake answers as the resolver would (*net.DNSError, not found).
type switchableDNS struct{ down atomic.Bool }

func (d *switchableDNS) client(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: time.Second}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true, // every call dials, so every call meets the resolver
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if d.down.Load() {
				host, _, _ := net.SplitHostPort(addr)
				return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}}
}

// Case 1: a provider blip during a due refresh keeps the session: served
// while the access token is still valid, a friendly 503 with Retry-After
// once it is not, and refreshed once the provider answers again. Only an
// authoritative answer (the refresh token is revoked) ends it.
func TestRefresh_ProviderBlipKeepsTheSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		break_, fix func(*testenv.IdP, *switchableDNS)
	}{
		{"ProviderDown", func(i *testenv.IdP, _ *switchableDNS) { i.Stop() }, nil},
		{"Gateway502", func(i *testenv.IdP, _ *switchableDNS) { i.FailTokenEndpoint(http.StatusBadGateway) },
			func(i *testenv.IdP, _ *switchableDNS) { i.FailTokenEndpoint(0) }},
		{"Timeout", func(i *testenv.IdP, _ *switchableDNS) { i.SetTokenLatency(3 * time.Second) },
			func(i *testenv.IdP, _ *switchableDNS) { i.SetTokenLatency(0) }},
		{"DNSFailure", func(_ *testenv.IdP, d *switchableDNS) { d.down.Store(true) },
			func(_ *testenv.IdP, d *switchableDNS) { d.down.Store(false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dns := &switchableDNS{}
			// The app's clock is moved instead of waiting. Access tokens
			// of 5 min (the provider's default) reach the app as expiring
			// in whole seconds, 297 to 299 s after the sign-in; a refresh
			// is due 4 min before that. 2 min ahead the refresh is due
			// (120 + 240 >= 299) and the token good for almost 3 min more
			// of real time; 6 min ahead it has expired.
			clock := &testenv.Clock{}
			idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
				Options: server.Options{Now: clock.Now, RefreshSkew: 4 * time.Minute, HTTPClient: dns.client(time.Second)},
			})
			br := testenv.NewBrowser(t)
			br.Login(app, "alice", pw)
			tc.break_(idp, dns)

			clock.Advance(2 * time.Minute)
			r := br.Get(app.URL + "/profile")
			assertNotSignedOut(t, r, "refresh due, provider unreachable, access token still valid")
			if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, "Alice Admin") {
				t.Fatalf("within the access token's lifetime: %s, want the page served", r)
			}

			clock.Advance(4 * time.Minute)
			r = br.Get(app.URL + "/profile")
			assertNotSignedOut(t, r, "access token expired, provider unreachable")
			if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, "temporarily unavailable") {
				t.Fatalf("after expiry during the blip: %s, want the friendly 503 with Retry-After", r)
			}

			if tc.fix != nil {
				tc.fix(idp, dns)
			} else {
				idp.Start(t)
			}
			// The clock stays ahead: the refresh is still due. (The
			// refreshed tokens look expired to the app at once, but the
			// request that refreshed is served with them, and the ID
			// token's times are checked on the provider's real time.)
			before := idp.Refreshes()
			eventuallyServed(t, br, app, 30*time.Second, "the session to be refreshed once the provider answers")
			if got := idp.Refreshes() - before; got != 1 {
				t.Errorf("refreshes after the provider came back = %d, want 1", got)
			}
		})
	}

	// The authoritative answer, invalid_grant, does end it:
	// TestRefresh_Interoperable/RevokedEndsTheSessionAndTheLogSaysWhy.
}

// sessionIDOf opens a server-side store's session cookie: the sealed ID.
func sessionIDOf(t *testing.T, c *http.Cookie) string {
	t.Helper()
	sealer, err := seal.New(testSessionSecret, "", "session")
	if err != nil {
		t.Fatal(err)
	}
	id, _, _, err := sealer.Open(c.Name, c.Value, 0, time.Now())
	if err != nil {
		t.Fatalf("open session cookie: %v", err)
	}
	return string(id)
}

// Case 2: a replica waiting for another replica's refresh lock gives up
// within the request's budget with a 503 and leaves the record alone; it
// never deletes a session the holder may just have refreshed.
func TestRefresh_WaitingForAnotherReplicasLockNeverEndsTheSession(t *testing.T) {
	t.Parallel()
	idp, a, b := replicas(t, testenv.IdPOptions{TokenTTL: 3 * time.Second}, server.Options{RefreshSkew: time.Nanosecond})
	br := testenv.NewBrowser(t)
	br.Login(a, "alice", pw)
	c := br.Cookie(a.URL, "gatehouse")

	// A third replica takes the session's refresh lock and freezes (a
	// stuck pod): the lock is a real one, taken through the store.
	frozen := testenv.RedisStore(t, a.Config.RedisURL, a.Config.RedisKeyPrefix, "")
	unlock, ok, err := frozen.TryLock(t.Context(), sessionIDOf(t, c), time.Minute)
	if err != nil || !ok {
		t.Fatalf("take the lock: ok=%v err=%v", ok, err)
	}
	time.Sleep(3100 * time.Millisecond) // the access token expires for real

	before := idp.Refreshes()
	var wg sync.WaitGroup
	answers := make([]*testenv.Response, 2)
	errs := make([]error, 2)
	for i, app := range []*testenv.App{a, b} {
		br := onlyOn(t, app, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = br.TryGet(app.URL + "/profile")
		}()
	}
	waitWithin(t, &wg, 30*time.Second, "both replicas' answers while another holds the lock")
	for i, r := range answers {
		if errs[i] != nil {
			t.Fatalf("replica %c: %v", "AB"[i], errs[i])
		}
		assertNotSignedOut(t, r, "waiting for a held lock")
		if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Errorf("replica %c while another holds the lock: %s, want 503 with Retry-After", "AB"[i], r)
		}
	}
	unlock()
	eventually(t, 10*time.Second, "the refresh once the lock is free", func() bool {
		return onlyOn(t, b, c).Get(b.URL+"/profile").StatusCode == http.StatusOK
	})
	if got := idp.Refreshes() - before; got != 1 {
		t.Errorf("refreshes = %d, want 1 (both replicas' waits end with the one refresh)", got)
	}
	assertSignedIn(t, onlyOn(t, a, c), a, "Alice Admin")
}

// rotationFault is the real Redis store with writes that fail on demand,
// and fail without writing: a write that times out may or may not have
// reached Redis, so the one fault that must not land (the record keeps the
// used-up refresh token) cannot be caused for real. This is the only fake.
type rotationFault struct {
	*session.RedisStore
	puts, saves atomic.Int64 // how many writes still fail
}

func (f *rotationFault) Put(ctx context.Context, s *session.Session) error {
	if f.puts.Add(-1) >= 0 {
		return fmt.Errorf("%w: injected write fault", session.ErrUnavailable)
	}
	return f.RedisStore.Put(ctx, s)
}

func (f *rotationFault) Save(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	if f.saves.Add(-1) >= 0 {
		return fmt.Errorf("%w: injected write fault", session.ErrUnavailable)
	}
	return f.RedisStore.Save(w, r, s)
}

// Case 3: a store fault right after the provider rotated the refresh token
// loses nothing: the write is retried, and where it cannot be, the new
// tokens stay in the process until it succeeds.
func TestRefresh_StoreFaultAfterRotationKeepsTheNewTokens(t *testing.T) {
	t.Parallel()
	redisURL, prefix := testenv.Redis(t)
	store := &rotationFault{RedisStore: testenv.RedisStore(t, redisURL, prefix, "")}
	// The app's clock is moved past the access token's expiry instead of
	// waiting for it, and back once the refreshed tokens are in the
	// session. The provider keeps real time, so a token it issues looks as
	// much older to the app as the clock is ahead: with the clock left
	// ahead, the refreshed token would be due at once too. Access tokens of
	// 5 min (the provider's default) reach the app as expiring in whole
	// seconds, 297 to 299 s after they were issued; the refresh skew is
	// the default 30 s. So 5 min ahead the old token is due, and back at
	// real time the refreshed one is not due for over 4 min.
	const ahead = 5 * time.Minute
	clock := &testenv.Clock{}
	idp, app := testenv.Setup(t, testenv.IdPOptions{},
		testenv.AppOptions{Options: server.Options{Now: clock.Now, Sessions: store}})

	t.Run("OneShot", func(t *testing.T) {
		br := testenv.NewBrowser(t)
		br.Login(app, "alice", pw)
		clock.Advance(ahead)
		store.puts.Store(1) // the write of the rotated tokens fails once
		before := idp.Refreshes()
		r := br.Get(app.URL + "/profile")
		clock.Advance(-ahead)
		assertNotSignedOut(t, r, "one failed write after rotation")
		if got := idp.Refreshes() - before; got != 1 {
			t.Errorf("refreshes = %d, want 1", got)
		}
		assertSignedIn(t, br, app, "Alice Admin")
		assertSignedIn(t, br, app, "Alice Admin")
		if got := idp.Refreshes() - before; got != 1 {
			t.Errorf("refreshes after two more requests = %d, want still 1 (the rotated tokens were kept)", got)
		}
	})

	t.Run("UntilTheStoreAnswers", func(t *testing.T) {
		br := testenv.NewBrowser(t)
		br.Login(app, "bob", pw)
		id := sessionIDOf(t, br.Cookie(app.URL, "gatehouse"))
		signedIn, err := store.Get(t.Context(), id)
		if err != nil {
			t.Fatalf("read the new session: %v", err)
		}
		clock.Advance(ahead)
		store.puts.Store(1 << 30) // every write fails, for now
		store.saves.Store(1 << 30)
		before := idp.Refreshes()
		r := br.Get(app.URL + "/profile")
		assertNotSignedOut(t, r, "store failing after rotation")
		if r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("with the store failing: %s, want 503", r)
		}
		store.puts.Store(0)
		store.saves.Store(0)
		// The refresh's flight goes on writing the rotated tokens until
		// the store takes them.
		eventually(t, 15*time.Second, "the kept tokens to be written", func() bool {
			s, err := store.Get(t.Context(), id)
			return err == nil && s.RefreshToken != signedIn.RefreshToken
		})
		clock.Advance(-ahead)
		eventuallyServed(t, br, app, 15*time.Second, "the session to be served with the kept tokens")
		if got := idp.Refreshes() - before; got != 1 {
			t.Errorf("refreshes = %d, want 1 (the rotated tokens were kept, not fetched again)", got)
		}
	})
}

// Case 4: with the cookie store and two replicas, a browser's concurrent
// requests reach both when its access token expires; the provider rotates
// the refresh token for the first and refuses it to the second. Measured:
// sign-outs under that race (a handful of users, requests in pairs, one to
// each replica, with access tokens of two seconds).
func TestCookieStore_TwoReplicasUnderRotationSignNobodyOut(t *testing.T) {
	t.Parallel()
	lnA, urlA := testenv.Listen(t)
	lnB, urlB := testenv.Listen(t)
	idp := testenv.StartIdP(t, testenv.IdPOptions{TokenTTL: 2 * time.Second, AppURLs: []string{urlA, urlB}})
	opts := testenv.AppOptions{Options: server.Options{RefreshSkew: 500 * time.Millisecond}}
	a := testenv.StartApp(t, lnA, urlA, idp, opts, true)
	b := testenv.StartApp(t, lnB, urlB, idp, opts, true)

	const users, duration = 6, 7 * time.Second
	var ok, unavailable, other, signedOut atomic.Int64
	// Signed in here, on the test's goroutine (a failed sign-in ends the
	// test); the cookie jar shares the cookie with b (same host).
	browsers := make([]*testenv.Browser, users)
	for u := range users {
		browsers[u] = testenv.NewBrowser(t)
		browsers[u].Login(a, []string{"alice", "bob"}[u%2], pw)
	}
	before := idp.Refreshes()
	var wg sync.WaitGroup
	for _, br := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			end := time.Now().Add(duration)
			for time.Now().Before(end) {
				var pair sync.WaitGroup
				out := make([]*http.Response, 2)
				for i, app := range []*testenv.App{a, b} {
					pair.Add(1)
					go func() {
						defer pair.Done()
						resp, err := br.Client.Get(app.URL + "/profile")
						if err != nil {
							t.Error(err)
							return
						}
						resp.Body.Close()
						out[i] = resp
					}()
				}
				pair.Wait()
				lost := false
				for _, resp := range out {
					switch {
					case resp == nil:
					case resp.StatusCode == http.StatusOK:
						ok.Add(1)
					case resp.StatusCode == http.StatusServiceUnavailable:
						unavailable.Add(1)
					case resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/auth/signin"):
						lost = true
					default:
						other.Add(1)
					}
				}
				if lost {
					signedOut.Add(1)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	waitWithin(t, &wg, duration+time.Minute, "the users' request pairs")
	t.Logf("%d users, %v, access tokens of 2 s, request pairs across 2 replicas: %d answered 200, %d 503, %d other; %d refreshes; %d users signed out",
		users, duration, ok.Load(), unavailable.Load(), other.Load(), idp.Refreshes()-before, signedOut.Load())
	if n := signedOut.Load(); n != 0 {
		t.Errorf("%d of %d users were signed out by the rotation race between the two replicas", n, users)
	}
	if n := other.Load(); n != 0 {
		t.Errorf("%d answers were neither 200, 503 nor a sign-in redirect", n)
	}
	if idp.Refreshes()-before < users {
		t.Errorf("only %d refreshes: the race was not exercised", idp.Refreshes()-before)
	}
}

// With the cookie store, a refused refresh token is taken for another
// replica's rotation only for a short window: a refusal that outlasts it
// ends the session.
func TestCookieStore_RevokedRefreshTokenEndsTheSession(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{TokenTTL: 2 * time.Second},
		testenv.AppOptions{Options: server.Options{RefreshSkew: time.Nanosecond}})
	br := testenv.NewBrowser(t)
	br.Login(app, "alice", pw)
	if err := idp.RevokeTokens(t.Context(), aliceID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	refused := time.Now()
	assertSignedIn(t, br, app, "Alice Admin") // within the window: could be a race
	eventually(t, 15*time.Second, "the refused session to end", func() bool {
		r := br.Get(app.URL + "/profile")
		return r.StatusCode == http.StatusSeeOther && strings.HasPrefix(r.Header.Get("Location"), "/auth/signin")
	})
	if took := time.Since(refused); took < 9*time.Second || took > 15*time.Second {
		t.Errorf("the refused session ended %v after the first refusal, want about the 10 s window", took)
	}
}

// Case 5: roles follow the provider: re-read within ROLES_MAX_AGE and at
// every refresh, and only from the configured project's claim.
func TestRoles_ChangesReachTheSession(t *testing.T) {
	t.Parallel()
	t.Run("WithinRolesMaxAge", func(t *testing.T) {
		t.Parallel()
		idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Env: map[string]string{"ROLES_MAX_AGE": "1s"}})
		br := testenv.NewBrowser(t)
		br.Login(app, "alice", pw)
		if r := br.Get(app.URL + "/admin"); r.StatusCode != http.StatusOK {
			t.Fatalf("admin before the change = %s", r)
		}
		idp.SetRoles(aliceID, []string{"viewer"})
		time.Sleep(1100 * time.Millisecond)
		if r := br.Get(app.URL + "/admin"); r.StatusCode != http.StatusForbidden {
			t.Fatalf("admin after the grant was removed and ROLES_MAX_AGE passed = %s, want 403", r)
		}
		assertSignedIn(t, br, app, "Alice Admin")
		idp.SetRoles(aliceID, []string{"admin", "viewer"})
		time.Sleep(1100 * time.Millisecond)
		if r := br.Get(app.URL + "/admin"); r.StatusCode != http.StatusOK {
			t.Fatalf("admin after the grant came back = %s, want 200", r)
		}
	})
	t.Run("AtRefresh", func(t *testing.T) {
		t.Parallel()
		// ZITADEL's default: roles in userinfo, not in the ID token.
		idp, app := testenv.Setup(t, testenv.IdPOptions{TokenTTL: 2 * time.Second, RolesOnlyInUserinfo: true}, testenv.AppOptions{
			Env: map[string]string{"ROLES_MAX_AGE": "1h"}, Options: server.Options{RefreshSkew: time.Nanosecond}})
		br := testenv.NewBrowser(t)
		br.Login(app, "alice", pw)
		idp.SetRoles(aliceID, []string{"viewer"})
		time.Sleep(2100 * time.Millisecond)
		before := idp.Refreshes()
		if r := br.Get(app.URL + "/admin"); r.StatusCode != http.StatusForbidden {
			t.Fatalf("admin after a refresh that no longer grants it = %s, want 403", r)
		}
		if idp.Refreshes()-before != 1 {
			t.Fatalf("refreshes = %d, want 1", idp.Refreshes()-before)
		}
	})
	t.Run("OnlyTheConfiguredProject", func(t *testing.T) {
		t.Parallel()
		users := devidp.DemoUsers()
		users[1].OtherProjectRoles = map[string][]string{"999999999999999999": {"admin"}} // bob: admin elsewhere only
		for _, env := range []map[string]string{nil, {"ZITADEL_PROJECT_ID": devidp.DemoProjectID}} {
			_, app := testenv.Setup(t, testenv.IdPOptions{Users: users}, testenv.AppOptions{Env: env})
			bob, alice := testenv.NewBrowser(t), testenv.NewBrowser(t)
			bob.Login(app, "bob", pw)
			alice.Login(app, "alice", pw)
			if r := bob.Get(app.URL + "/admin"); r.StatusCode != http.StatusForbidden {
				t.Errorf("project %q: bob, admin in another project only = %s, want 403", env["ZITADEL_PROJECT_ID"], r)
			}
			if r := alice.Get(app.URL + "/admin"); r.StatusCode != http.StatusOK {
				t.Errorf("project %q: alice, admin in the project = %s, want 200", env["ZITADEL_PROJECT_ID"], r)
			}
		}
	})
}

// stepLog records the auth steps' outcomes (the metrics' input).
type stepLog struct {
	mu    sync.Mutex
	steps []string // "step outcome reason"
}

func (s *stepLog) Step(_ context.Context, step, outcome, reason string, _ time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, strings.TrimSpace(step+" "+outcome+" "+reason))
}

func (s *stepLog) has(entry string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.steps {
		if e == entry {
			return true
		}
	}
	return false
}

// Case 6: a back-channel logout that arrives while the user's sign-in is
// between its code exchange and its save is not undone by the save, with
// a token naming sub and sid or sid alone; and a logout that matched no
// session says so in the log and the metrics.
func TestBackchannelLogout_DuringSignInIsNotUndoneByTheCallback(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"redis", "memory"} {
		for _, sidOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/sidOnly=%v", store, sidOnly), func(t *testing.T) {
				t.Parallel()
				modify := func(c *config.Config) { c.SessionStore = "memory" }
				if store == "redis" {
					modify = testenv.UseRedis(testenv.Redis(t))
				}
				logs := &testenv.SyncBuffer{}
				steps := &stepLog{}
				idp, app := testenv.Setup(t, testenv.IdPOptions{Backchannel: true}, testenv.AppOptions{Modify: modify,
					Options: server.Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Observer: steps}})
				br := testenv.NewBrowser(t)
				back := br.LoginAtProvider(br.StartSignIn(app, ""), "alice", pw)
				reached, release := idp.HoldUserinfo()
				t.Cleanup(release)
				done := br.GetLater(back.Header.Get("Location"))
				select {
				case <-reached: // the callback has exchanged its code and waits for userinfo
				case res := <-done:
					t.Fatalf("the callback ended before it asked for userinfo: %v %v", res.Response, res.Err)
				case <-time.After(30 * time.Second):
					t.Fatal("the callback did not reach the provider's userinfo endpoint within 30 s")
				}

				if sidOnly {
					raw, _ := json.Marshal(idp.LogoutTokenClaims(testenv.ClientID, aliceID))
					var m map[string]any
					_ = json.Unmarshal(raw, &m)
					if m["sid"] == "" || m["sid"] == nil {
						t.Fatal("no sid for alice at the provider")
					}
					delete(m, "sub")
					tok, err := idp.SignJWT(m, "logout+jwt")
					if err != nil {
						t.Fatal(err)
					}
					if r := postLogoutToken(t, app, tok); r.StatusCode != http.StatusOK {
						t.Fatalf("sid-only logout token = %d %s", r.StatusCode, r.Body)
					}
				} else if err := idp.BackchannelLogout(t.Context(), aliceID); err != nil {
					t.Fatalf("back-channel logout: %v", err)
				}
				if !strings.Contains(logs.String(), "matched no session") || !steps.has("auth.backchannel_logout no_match") {
					t.Errorf("a logout that ended nothing is not reported as such; steps %q; log:\n%s", steps.steps, logs.String())
				}
				release()
				select {
				case res := <-done:
					switch {
					case res.Err != nil:
						t.Fatalf("callback: %v", res.Err)
					case res.Response.StatusCode == http.StatusSeeOther && res.Response.Header.Get("Location") == "/profile":
						t.Errorf("the callback signed alice in after her provider session ended: %s", res.Response)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("the callback did not answer within 30 s of the provider's userinfo answer")
				}
				assertSignedOut(t, br, app)
			})
		}
	}
}

// Case 7: a Redis session too large to read back is refused when it is
// saved, with the friendly page, not saved and then lost at every load.
func TestRedis_SessionTooLargeToReadBackIsRefusedAtSignIn(t *testing.T) {
	t.Parallel()
	blob := make([]byte, 60<<10)
	_, _ = rand.Read(blob)
	users := devidp.DemoUsers()
	users[0].Metadata["archive"] = base64.StdEncoding.EncodeToString(blob)
	redisURL, prefix := testenv.Redis(t)
	_, app := testenv.Setup(t, testenv.IdPOptions{Users: users}, testenv.AppOptions{Modify: testenv.UseRedis(redisURL, prefix)})
	br := testenv.NewBrowser(t)
	r := br.Login(app, "alice", pw)
	if r.StatusCode != http.StatusInternalServerError || !strings.Contains(r.Body, "too large") {
		t.Fatalf("sign-in with a session over the read-back limit = %s; want the session_too_large page", r)
	}
	assertSignedOut(t, br, app)
	other := testenv.NewBrowser(t)
	other.Login(app, "bob", pw)
	assertSignedIn(t, other, app, "Bob Viewer")
}

var (
	uuidRe = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	jwtRe  = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}`)
)

// Case 8: refresh interoperates with providers that differ from ZITADEL
// where the specifications let them: a refreshed ID token with the
// original nonce, a grant of fewer scopes than requested; and the log
// names the provider's error code and description, never a token.
func TestRefresh_Interoperable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts testenv.IdPOptions
	}{
		{"NonceEchoed", testenv.IdPOptions{EchoNonceOnRefresh: true}},
		{"FewerScopesGranted", testenv.IdPOptions{UngrantedScopes: []string{devidp.ScopeMetadata}}},
		{"Both", testenv.IdPOptions{EchoNonceOnRefresh: true, UngrantedScopes: []string{devidp.ScopeMetadata, devidp.ScopeResourceOwner}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.TokenTTL = 2 * time.Second
			idp, app := testenv.Setup(t, tc.opts, testenv.AppOptions{Options: server.Options{RefreshSkew: time.Nanosecond}})
			br := testenv.NewBrowser(t)
			br.Login(app, "alice", pw)
			before := idp.Refreshes()
			for i := range 2 {
				time.Sleep(2100 * time.Millisecond)
				r := br.Get(app.URL + "/profile")
				assertNotSignedOut(t, r, fmt.Sprintf("refresh %d", i+1))
				if r.StatusCode != http.StatusOK {
					t.Fatalf("refresh %d: %s", i+1, r)
				}
			}
			if got := idp.Refreshes() - before; got != 2 {
				t.Errorf("refreshes = %d, want 2", got)
			}
		})
	}

	t.Run("RevokedEndsTheSessionAndTheLogSaysWhy", func(t *testing.T) {
		t.Parallel()
		// A server-side store: no other replica can have rotated the
		// token, so the refusal ends the session at once (the cookie
		// store's case: TestCookieStore_RevokedRefreshTokenEndsTheSession).
		logs := &testenv.SyncBuffer{}
		idp, app := testenv.Setup(t, testenv.IdPOptions{TokenTTL: 2 * time.Second}, testenv.AppOptions{
			Modify:  func(c *config.Config) { c.SessionStore = "memory" },
			Options: server.Options{RefreshSkew: time.Nanosecond, Logger: slog.New(slog.NewJSONHandler(logs, nil))}})
		br := testenv.NewBrowser(t)
		br.Login(app, "alice", pw)
		if err := idp.RevokeTokens(t.Context(), aliceID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2100 * time.Millisecond)
		assertSignedOut(t, br, app)
		var line map[string]any
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "refresh") && json.Unmarshal([]byte(l), &line) == nil && line["level"] == "WARN" {
				break
			}
			line = nil
		}
		if line == nil {
			t.Fatalf("no warning about the refused refresh; log:\n%s", logs.String())
		}
		text := fmt.Sprint(line)
		if !strings.Contains(text, "invalid_grant") || strings.Contains(text, "error of type") {
			t.Errorf("log line %s: want the provider's error code (invalid_grant), not a type name", text)
		}
		if uuidRe.MatchString(logs.String()) || jwtRe.MatchString(logs.String()) {
			t.Errorf("the log holds something shaped like a token:\n%s", logs.String())
		}
	})
}
