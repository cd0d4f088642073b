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
// be empty) and cookie security. now is the clock the store must use.
type Factory func(t *testing.T, secret, previous string, secure bool, now func() time.Time) session.Store

// Features tells the suite what the store promises.
type Features struct {
	ServerSide bool // Delete ends the session even for a copied cookie; large sessions fit
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
		st := newStore(t, secretA, "", false, clock)
		_, err := st.Load(httptest.NewRequest(http.MethodGet, "/", nil))
		if !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("Load() error = %v, want ErrNoSession", err)
		}
	})

	t.Run("SaveThenLoadRoundTrips", func(t *testing.T) {
		st := newStore(t, secretA, "", false, clock)
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
			st := newStore(t, secretA, "", secure, clock)
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

	t.Run("TamperedCookieIsNoSession", func(t *testing.T) {
		st := newStore(t, secretA, "", false, clock)
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
		c := save(t, newStore(t, secretA, "", false, clock), sample(now))
		_, err := newStore(t, secretB, "", false, clock).Load(withCookie(c))
		if !errors.Is(err, session.ErrNoSession) {
			t.Fatalf("Load() with another secret error = %v, want ErrNoSession", err)
		}
	})

	t.Run("PreviousSecretStillOpensAndAsksForReseal", func(t *testing.T) {
		old := newStore(t, secretA, "", false, clock)
		c := save(t, old, sample(now))
		rotated := newStore(t, secretB, secretA, false, clock)
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
		got2, err := newStore(t, secretB, "", false, clock).Load(withCookie(c2))
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
		st := newStore(t, secretA, "", false, clock)
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
		st := newStore(t, secretA, "", false, clock)
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

	if !f.ServerSide {
		return
	}

	t.Run("RevokeBySubjectAndProviderSID", func(t *testing.T) {
		st := newStore(t, secretA, "", false, clock)
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

	t.Run("ExpiredServerRecordIsGone", func(t *testing.T) {
		cur := now
		st := newStore(t, secretA, "", false, func() time.Time { return cur })
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
	save(t, dst, s)
	return save(t, src, s)
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
