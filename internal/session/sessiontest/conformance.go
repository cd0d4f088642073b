// Package sessiontest is the conformance suite every session.Store must pass,
// run by each store's own tests (the way dex tests its storages).
package sessiontest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/session"
)

// Factory builds the store under test with the given secrets (previous may
// be empty) and cookie options. now is the clock the store must use.
type Factory func(t *testing.T, secret, previous string, opts session.CookieOptions, now func() time.Time) session.Store

// Features tells the suite what the store promises.
type Features struct {
	ServerSide bool // Delete ends the session even for a copied cookie; large sessions fit; Revoker and OnceMarker
	Shared     bool // records are shared between replicas: session.Shared (refresh lock)
}

const (
	secretA = "conformance-secret-a-0123456789abcdef"
	secretB = "conformance-secret-b-0123456789abcdef"
)

// Run runs the suite.
func Run(t *testing.T, newStore Factory, f Features) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }

	t.Run("LoadWithoutCookieIsNoSession", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		_, err := st.Load(httptest.NewRequest(http.MethodGet, "/", nil))
		if !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("Load() error = %v, want ErrNoSession", err)
		}
	})

	t.Run("SaveThenLoadRoundTrips", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		want := sample(now)
		c := save(t, st, want)
		got, err := st.Load(withCookie(c))
		if err != nil {
			t.Fatalf("Load() error = %v", err)
		}
		if got.ID != want.ID || got.Subject != want.Subject || got.ProviderSID != want.ProviderSID ||
			got.IDToken != want.IDToken || got.AccessToken != want.AccessToken ||
			got.RefreshToken != want.RefreshToken || got.AccessExpiry != want.AccessExpiry ||
			string(got.Userinfo) != string(want.Userinfo) || got.ExpiresAt != want.ExpiresAt ||
			got.LastSeen != want.LastSeen || got.CreatedAt != want.CreatedAt {
			t.Fatalf("Load() = %+v, want %+v", got, want)
		}
		if got.Reseal {
			t.Error("Reseal = true for a session sealed with the current secret")
		}
	})

	t.Run("CookieAttributes", func(t *testing.T) {
		for _, secure := range []bool{false, true} {
			st := newStore(t, secretA, "", session.CookieOptions{Secure: secure}, clock)
			c := save(t, st, sample(now))
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure != secure {
				t.Errorf("secure=%v: cookie %q HttpOnly=%v SameSite=%v Path=%q Secure=%v", secure, c.Name, c.HttpOnly, c.SameSite, c.Path, c.Secure)
			}
			if secure != strings.HasPrefix(c.Name, "__Host-") {
				t.Errorf("secure=%v: cookie name %q", secure, c.Name)
			}
			if want := int(time.Hour / time.Second); c.MaxAge != want {
				t.Errorf("MaxAge = %d, want the remaining lifetime %d", c.MaxAge, want)
			}
		}
	})

	t.Run("CookieDomainIsSharedAndCleared", func(t *testing.T) {
		// COOKIE_DOMAIN: the cookie reaches every host below the domain,
		// under the __Secure- prefix (a __Host- cookie cannot carry a
		// Domain), and sign-out clears that very cookie, not a host-only one.
		opts := session.CookieOptions{Secure: true, Domain: "example.com"}
		st := newStore(t, secretA, "", opts, clock)
		s := sample(now)
		c := save(t, st, s)
		if c.Name != "__Secure-gatehouse" || c.Domain != "example.com" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("cookie %q Domain=%q Secure=%v HttpOnly=%v SameSite=%v, want __Secure-gatehouse for example.com",
				c.Name, c.Domain, c.Secure, c.HttpOnly, c.SameSite)
		}
		got, err := st.Load(withCookie(c))
		if err != nil || got.ID != s.ID {
			t.Fatalf("Load() = %v, %v", got, err)
		}
		rec := httptest.NewRecorder()
		if err := st.Delete(rec, withCookie(c), got); err != nil {
			t.Fatal(err)
		}
		d := cookieFrom(t, rec)
		if d.Name != c.Name || d.Domain != "example.com" || d.MaxAge >= 0 {
			t.Fatalf("deletion cookie %q Domain=%q MaxAge=%d, want the shared cookie expired", d.Name, d.Domain, d.MaxAge)
		}
		// A cookie under the host-only name is not this session.
		if _, err := st.Load(withCookie(&http.Cookie{Name: "__Host-gatehouse", Value: c.Value})); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() of the value under another name: %v, want ErrNoSession", err)
		}
	})

	t.Run("TamperedCookieIsNoSession", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		c := save(t, st, sample(now))
		for name, value := range map[string]string{
			"flipped":   flip(c.Value),
			"truncated": c.Value[:len(c.Value)/2],
			"empty":     "",
			"garbage":   "not-a-sealed-value",
			"huge":      strings.Repeat("A", 10000),
		} {
			_, err := st.Load(withCookie(&http.Cookie{Name: c.Name, Value: value}))
			if !errors.Is(err, session.ErrNoSession) {
				t.Errorf("%s: Load() error = %v, want ErrNoSession", name, err)
			}
		}
	})

	t.Run("OtherSecretIsNoSession", func(t *testing.T) {
		c := save(t, newStore(t, secretA, "", session.CookieOptions{}, clock), sample(now))
		_, err := newStore(t, secretB, "", session.CookieOptions{}, clock).Load(withCookie(c))
		if !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("Load() with another secret error = %v, want ErrNoSession", err)
		}
	})

	t.Run("PreviousSecretStillOpensAndAsksForReseal", func(t *testing.T) {
		old := newStore(t, secretA, "", session.CookieOptions{}, clock)
		c := save(t, old, sample(now))
		rotated := newStore(t, secretB, secretA, session.CookieOptions{}, clock)
		if f.ServerSide {
			// The server side is per store instance in these tests; re-save
			// the record through the rotated store's backend first.
			c = saveWithCookieSealedBy(t, rotated, old, sample(now))
		}
		got, err := rotated.Load(withCookie(c))
		if err != nil {
			t.Fatalf("Load() with previous secret error = %v", err)
		}
		if !got.Reseal {
			t.Error("Reseal = false for a session sealed with the previous secret")
		}
		c2 := save(t, rotated, got)
		got2, err := newStore(t, secretB, "", session.CookieOptions{}, clock).Load(withCookie(c2))
		if f.ServerSide {
			// Different instance, different memory: only the cookie format is checked.
			if err != nil && !errors.Is(err, session.ErrNoSession) {
				t.Fatalf("Load() after reseal error = %v", err)
			}
			return
		}
		if err != nil || got2.Reseal {
			t.Fatalf("after reseal: Load() = %+v, %v; want current-secret session", got2, err)
		}
	})

	t.Run("DeleteExpiresCookie", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		s := sample(now)
		c := save(t, st, s)
		rec := httptest.NewRecorder()
		if err := st.Delete(rec, withCookie(c), s); err != nil {
			t.Fatalf("Delete() error = %v", err)
		}
		del := cookieFrom(t, rec)
		if del.MaxAge >= 0 {
			t.Errorf("deletion cookie MaxAge = %d, want < 0", del.MaxAge)
		}
		_, err := st.Load(withCookie(c))
		if f.ServerSide && !errors.Is(err, session.ErrNoSession) {
			t.Errorf("copied cookie after Delete: Load() error = %v, want ErrNoSession", err)
		}
	})

	t.Run("LargeSession", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		s := sample(now)
		// Random text: compression must not rescue it.
		blob := make([]byte, 4500)
		_, _ = rand.Read(blob)
		s.Userinfo = []byte(`{"blob":"` + base64.RawURLEncoding.EncodeToString(blob) + `"}`)
		rec := httptest.NewRecorder()
		err := st.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), s)
		if !f.ServerSide {
			if !errors.Is(err, session.ErrTooLarge) {
				t.Fatalf("Save() of a 6 KB session error = %v, want ErrTooLarge", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Save() error = %v", err)
		}
		c := cookieFrom(t, rec)
		if len(c.Value) >= 200 {
			t.Errorf("server-side cookie is %d bytes, want < 200", len(c.Value))
		}
		got, err := st.Load(withCookie(c))
		if err != nil || string(got.Userinfo) != string(s.Userinfo) {
			t.Fatalf("Load() large = %v", err)
		}
	})

	t.Run("DeleteWithoutSessionClearsCookie", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		c := save(t, st, sample(now))
		rec := httptest.NewRecorder()
		if err := st.Delete(rec, withCookie(c), nil); err != nil {
			t.Fatalf("Delete(nil) error = %v", err)
		}
		if del := cookieFrom(t, rec); del.MaxAge >= 0 || del.Name != c.Name {
			t.Errorf("Delete(nil) cookie %q MaxAge = %d, want an expired %q", del.Name, del.MaxAge, c.Name)
		}
	})

	if !f.ServerSide {
		return
	}

	t.Run("SaveAfterDeleteDoesNotRevive", func(t *testing.T) {
		// A request that loaded the session before a logout elsewhere
		// finishes after it: its save must not bring the session back.
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		c := save(t, st, sample(now))
		loaded, err := st.Load(withCookie(c))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(httptest.NewRecorder(), withCookie(c), loaded); err != nil {
			t.Fatal(err)
		}
		loaded.LastSeen++
		err = st.Save(httptest.NewRecorder(), withCookie(c), loaded)
		if !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Save() of a deleted session error = %v, want ErrNoSession", err)
		}
		if _, err := st.Load(withCookie(c)); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("deleted session loads again after a late save: %v", err)
		}
	})

	t.Run("SaveAfterRevokeDoesNotRevive", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		c := save(t, st, sample(now))
		loaded, err := st.Load(withCookie(c))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := st.(session.Revoker).DeleteBySubject(context.Background(), loaded.Subject); err != nil || n != 1 {
			t.Fatalf("DeleteBySubject = %d, %v", n, err)
		}
		if err := st.Save(httptest.NewRecorder(), withCookie(c), loaded); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Save() of a revoked session error = %v, want ErrNoSession", err)
		}
		if _, err := st.Load(withCookie(c)); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("revoked session loads again after a late save: %v", err)
		}
	})

	t.Run("StaleSaveKeepsNewerTokens", func(t *testing.T) {
		// Two requests load the session; one refreshes (the provider
		// revokes the old refresh token), then the slower one saves its
		// idle timestamp: the record must keep the new tokens.
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		c := save(t, st, sample(now))
		slow, err := st.Load(withCookie(c))
		if err != nil {
			t.Fatal(err)
		}
		fast, err := st.Load(withCookie(c))
		if err != nil {
			t.Fatal(err)
		}
		fast.RefreshToken, fast.AccessToken = "refresh-token-2", "access-token-2"
		save(t, st, fast)
		slow.LastSeen++
		if err := st.Save(httptest.NewRecorder(), withCookie(c), slow); err != nil {
			t.Fatalf("stale Save() error = %v, want it skipped quietly", err)
		}
		got, err := st.Load(withCookie(c))
		if err != nil || got.RefreshToken != "refresh-token-2" || got.AccessToken != "access-token-2" {
			t.Fatalf("after a stale save: Load() = %+v, %v; want the refreshed tokens", got, err)
		}
		// The refreshing request itself may save again (touch after refresh).
		fast.LastSeen += 2
		save(t, st, fast)
		if got, err := st.Load(withCookie(c)); err != nil || got.LastSeen != fast.LastSeen {
			t.Fatalf("save by the refresher after its refresh: Load() = %+v, %v", got, err)
		}
	})

	t.Run("UpdateKeepsIndexes", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		c := save(t, st, sample(now))
		loaded, err := st.Load(withCookie(c))
		if err != nil {
			t.Fatal(err)
		}
		loaded.AccessToken = "rotated-access-token"
		c = save(t, st, loaded)
		if n, err := st.(session.Revoker).DeleteByProviderSID(context.Background(), loaded.ProviderSID); err != nil || n != 1 {
			t.Fatalf("DeleteByProviderSID after an update = %d, %v; want 1", n, err)
		}
		if _, err := st.Load(withCookie(c)); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("updated session survived revocation: %v", err)
		}
	})

	t.Run("MarkOnceRemembersKeys", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		m, ok := st.(session.OnceMarker)
		if !ok {
			t.Fatal("server-side store does not implement session.OnceMarker")
		}
		ctx := context.Background()
		until := now.Add(time.Minute)
		for i, want := range []bool{true, false, false} {
			if first, err := m.MarkOnce(ctx, "jti-1", until); err != nil || first != want {
				t.Fatalf("MarkOnce #%d = %v, %v; want %v", i+1, first, err, want)
			}
		}
		if first, err := m.MarkOnce(ctx, "jti-2", until); err != nil || !first {
			t.Fatalf("MarkOnce(other key) = %v, %v; want true", first, err)
		}
		if err := m.Unmark(ctx, "jti-1"); err != nil {
			t.Fatal(err)
		}
		if first, err := m.MarkOnce(ctx, "jti-1", until); err != nil || !first {
			t.Fatalf("MarkOnce after Unmark = %v, %v; want true", first, err)
		}
	})

	if f.Shared {
		t.Run("SharedLockIsExclusive", func(t *testing.T) {
			st := newStore(t, secretA, "", session.CookieOptions{}, clock).(session.Shared)
			ctx := context.Background()
			unlock, ok, err := st.TryLock(ctx, "some-id", 10*time.Second)
			if err != nil || !ok {
				t.Fatalf("TryLock = %v, %v; want the lock", ok, err)
			}
			if _, ok, err := st.TryLock(ctx, "some-id", 10*time.Second); err != nil || ok {
				t.Fatalf("second TryLock = %v, %v; want refused", ok, err)
			}
			if u, ok, err := st.TryLock(ctx, "other-id", 10*time.Second); err != nil || !ok {
				t.Fatalf("TryLock(other session) = %v, %v; want the lock", ok, err)
			} else {
				u()
			}
			unlock()
			u, ok, err := st.TryLock(ctx, "some-id", 10*time.Second)
			if err != nil || !ok {
				t.Fatalf("TryLock after unlock = %v, %v; want the lock", ok, err)
			}
			unlock() // a stale unlock must not free the new holder's lock
			if _, ok, _ := st.TryLock(ctx, "some-id", 10*time.Second); ok {
				t.Fatal("an old unlock released someone else's lock")
			}
			u()
		})

		t.Run("SharedGetPut", func(t *testing.T) {
			st := newStore(t, secretA, "", session.CookieOptions{}, clock)
			sh := st.(session.Shared)
			ctx := context.Background()
			s := sample(now)
			c := save(t, st, s)
			got, err := sh.Get(ctx, s.ID)
			if err != nil || got.RefreshToken != s.RefreshToken || got.Subject != s.Subject {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			got.RefreshToken = "refresh-token-2"
			if err := sh.Put(ctx, got); err != nil {
				t.Fatalf("Put = %v", err)
			}
			viaCookie, err := st.Load(withCookie(c))
			if err != nil || viaCookie.RefreshToken != "refresh-token-2" {
				t.Fatalf("Load after Put = %+v, %v; want the new refresh token", viaCookie, err)
			}
			if _, err := sh.Get(ctx, session.NewID()); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Get(unknown) error = %v, want ErrNoSession", err)
			}
			if err := st.Delete(httptest.NewRecorder(), withCookie(c), viaCookie); err != nil {
				t.Fatal(err)
			}
			if _, err := sh.Get(ctx, s.ID); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Get after Delete error = %v, want ErrNoSession", err)
			}
			if err := sh.Put(ctx, got); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Put after Delete error = %v, want ErrNoSession", err)
			}
			if _, err := st.Load(withCookie(c)); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Put revived a deleted session: %v", err)
			}
		})
	}

	t.Run("RevokeBySubjectAndProviderSID", func(t *testing.T) {
		st := newStore(t, secretA, "", session.CookieOptions{}, clock)
		rv, ok := st.(session.Revoker)
		if !ok {
			t.Fatal("server-side store does not implement session.Revoker")
		}
		a1, a2, b := sample(now), sample(now), sample(now)
		a2.ProviderSID = "sid-other"
		b.Subject, b.ProviderSID = "user-b", "sid-b"
		ca1, ca2, cb := save(t, st, a1), save(t, st, a2), save(t, st, b)

		n, err := rv.DeleteByProviderSID(context.Background(), a1.ProviderSID)
		if err != nil || n != 1 {
			t.Fatalf("DeleteByProviderSID = %d, %v; want 1", n, err)
		}
		if _, err := st.Load(withCookie(ca1)); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("session of revoked sid still loads: %v", err)
		}
		if _, err := st.Load(withCookie(ca2)); err != nil {
			t.Errorf("session of another sid was ended: %v", err)
		}
		n, err = rv.DeleteBySubject(context.Background(), a1.Subject)
		if err != nil || n != 1 {
			t.Fatalf("DeleteBySubject = %d, %v; want 1", n, err)
		}
		if _, err := st.Load(withCookie(ca2)); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("session of revoked subject still loads: %v", err)
		}
		if _, err := st.Load(withCookie(cb)); err != nil {
			t.Errorf("other user's session was ended: %v", err)
		}
	})

	t.Run("LogoutDuringSignInRefusesTheNewSession", func(t *testing.T) {
		// A back-channel logout arrives between a sign-in's code exchange
		// and its save: the save must not bring the ended session back.
		cur := now
		st := newStore(t, secretA, "", session.CookieOptions{}, func() time.Time { return cur })
		rv := st.(session.Revoker)
		started := cur.Add(-time.Second)

		bySID := sample(now)
		bySID.SignInStarted = started
		if n, err := rv.DeleteByProviderSID(context.Background(), bySID.ProviderSID); err != nil || n != 0 {
			t.Fatalf("DeleteByProviderSID = %d, %v; want 0 (nothing saved yet)", n, err)
		}
		if err := st.Save(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), bySID); !errors.Is(err, session.ErrLoggedOut) {
			t.Errorf("Save() of a session whose provider session ended in flight: %v, want ErrLoggedOut", err)
		}

		bySub := sample(now)
		bySub.Subject, bySub.ProviderSID, bySub.SignInStarted = "user-c", "sid-c", started
		if _, err := rv.DeleteBySubject(context.Background(), bySub.Subject); err != nil {
			t.Fatal(err)
		}
		if err := st.Save(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), bySub); !errors.Is(err, session.ErrLoggedOut) {
			t.Errorf("Save() of a user logged out after the sign-in began: %v, want ErrLoggedOut", err)
		}

		// A sign-in that began after the user's logout, with a new
		// provider session, is a new sign-in: it is kept.
		cur = cur.Add(time.Second)
		later := sample(now)
		later.Subject, later.ProviderSID, later.SignInStarted = "user-c", "sid-c2", cur
		c := save(t, st, later)
		if _, err := st.Load(withCookie(c)); err != nil {
			t.Errorf("a sign-in after the logout does not load: %v", err)
		}
	})

	t.Run("ExpiredServerRecordIsGone", func(t *testing.T) {
		cur := now
		st := newStore(t, secretA, "", session.CookieOptions{}, func() time.Time { return cur })
		s := sample(now)
		c := save(t, st, s)
		cur = now.Add(2 * time.Hour)
		if _, err := st.Load(withCookie(c)); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load() after the record's lifetime error = %v, want ErrNoSession", err)
		}
	})
}

func sample(now time.Time) *session.Session {
	return &session.Session{
		ID:           session.NewID(),
		Subject:      "user-a",
		ProviderSID:  "sid-a",
		IDToken:      "eyJhbGciOiJSUzI1NiJ9.e30.sig",
		AccessToken:  "access-token-value",
		RefreshToken: "refresh-token-value",
		TokenType:    "Bearer",
		AccessExpiry: now.Add(5 * time.Minute).Unix(),
		Userinfo:     []byte(`{"sub":"user-a","name":"A"}`),
		CreatedAt:    now.Unix(),
		LastSeen:     now.Unix(),
		ExpiresAt:    now.Add(time.Hour).Unix(),
	}
}

func save(t *testing.T, st session.Store, s *session.Session) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := st.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), s); err != nil {
		t.Fatalf("Save() error = %v", err)
	}
	return cookieFrom(t, rec)
}

// saveWithCookieSealedBy stores s in dst's backend, then returns a cookie
// for it sealed by src (which uses the previous secret).
func saveWithCookieSealedBy(t *testing.T, dst, src session.Store, s *session.Session) *http.Cookie {
	t.Helper()
	// Copies: each store creates its own record (a session that one
	// store has saved is an update for any store).
	first, second := *s, *s
	save(t, dst, &first)
	return save(t, src, &second)
}

func cookieFrom(t *testing.T, rec *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("response set %d cookies, want 1", len(cs))
	}
	return cs[0]
}

func withCookie(c *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	return r
}

func flip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
