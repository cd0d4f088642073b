package session

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
)

func cookieStoreForTest(t *testing.T) (*gorillaStore, *cookieBackend, *Session, string) {
	t.Helper()
	sealer, err := seal.New("opened-cache-test-secret-0123456789-abcdef", "", "session")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	st := NewCookieStore(sealer, CookieOptions{}, func() time.Time { return now }).(*gorillaStore)
	backend := st.gs.(*cookieBackend)
	s := &Session{ID: NewID(), Subject: "alice", IDToken: "header.payload.signature", AccessToken: "at", RefreshToken: "rt",
		CreatedAt: now.Unix(), LastSeen: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix()}
	w := httptest.NewRecorder()
	if err := st.Save(w, httptest.NewRequest(http.MethodGet, "/", nil), s); err != nil {
		t.Fatal(err)
	}
	return st, backend, s, w.Result().Cookies()[0].Value
}

func requestWith(name, value string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/profile", nil)
	r.Header.Set("Cookie", name+"="+value)
	return r
}

func TestOpenedCache_ServesOnlyTheExactValueItOpened(t *testing.T) {
	t.Parallel()
	st, backend, s, value := cookieStoreForTest(t)
	if got, err := st.Load(requestWith(st.name, value)); err != nil || got.ID != s.ID {
		t.Fatalf("first load = %v, %v", got, err)
	}
	if len(backend.opened.m) != 1 {
		t.Fatalf("cache holds %d values after one load, want 1", len(backend.opened.m))
	}
	// Every single-character change of a cached value must be opened (and
	// refused), never answered from the cache.
	for i := 0; i < len(value); i += 7 {
		// Flip the top bit of the character's 6-bit value: the last
		// character of unpadded base64 has unused low bits, so a change
		// there (A to B) can decode to the very same bytes.
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		j := strings.IndexByte(alphabet, value[i])
		if j < 0 {
			continue // a separator, not base64
		}
		c := alphabet[j^32]
		tampered := value[:i] + string(c) + value[i+1:]
		if got, err := st.Load(requestWith(st.name, tampered)); err == nil {
			t.Fatalf("tampered value (position %d) loaded session %q", i, got.ID)
		}
	}
	if got, err := st.Load(requestWith(st.name, strings.TrimSuffix(value, value[len(value)-1:]))); err == nil {
		t.Fatalf("truncated value loaded session %q", got.ID)
	}
}

func TestOpenedCache_CallersChangesDoNotLeakIntoTheCache(t *testing.T) {
	t.Parallel()
	st, _, s, value := cookieStoreForTest(t)
	first, err := st.Load(requestWith(st.name, value))
	if err != nil {
		t.Fatal(err)
	}
	first.AccessToken, first.LastSeen, first.Reseal = "changed", 1, true
	second, err := st.Load(requestWith(st.name, value))
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second.AccessToken != s.AccessToken || second.LastSeen != s.LastSeen || second.Reseal {
		t.Fatalf("second load saw the first caller's changes: %+v", second)
	}
}

func TestOpenedCache_StaysWithinItsBound(t *testing.T) {
	t.Parallel()
	c := newOpenedCache(8)
	for i := range 100 {
		c.put(strings.Repeat("v", i+1), &Session{ID: "x"})
	}
	if len(c.m) != 8 {
		t.Fatalf("cache holds %d values, want its bound of 8", len(c.m))
	}
	c.put(strings.Repeat("v", 100), &Session{ID: "y"}) // present already: replaced, nothing evicted
	if s, ok := c.get(strings.Repeat("v", 100)); len(c.m) != 8 || (ok && s.ID != "y") {
		t.Fatalf("re-putting a present value: %d entries, %v %v", len(c.m), s, ok)
	}
}

func TestCookieStore_DeflatesSessionsAndLoadsThemBack(t *testing.T) {
	t.Parallel()
	st, backend, small, value := cookieStoreForTest(t)
	format := func(value string) byte {
		t.Helper()
		payload, _, _, err := backend.sealer.Open(st.name, value, 0, backend.now())
		if err != nil || len(payload) == 0 {
			t.Fatalf("open: %v", err)
		}
		return payload[0]
	}
	if f := format(value); f != formatDeflate {
		t.Errorf("a small session was stored in format %d, want deflated", f)
	}
	// A ZITADEL-sized ID token: JSON claims in base64url, 3 KB, which
	// only fits in a cookie deflated.
	big := *small
	big.ID = NewID()
	big.IDToken = strings.Repeat("eyJ1cm46eml0YWRlbDppYW06b3JnOnByb2plY3Q6cm9sZXMiOnsiYWRtaW4iOnt9fX0", 45)
	w := httptest.NewRecorder()
	if err := st.Save(w, httptest.NewRequest(http.MethodGet, "/", nil), &big); err != nil {
		t.Fatalf("save a 3 KB session: %v", err)
	}
	bigValue := w.Result().Cookies()[0].Value
	if f := format(bigValue); f != formatDeflate {
		t.Errorf("a 3 KB session was stored in format %d, want deflated", f)
	}
	got, err := st.Load(requestWith(st.name, bigValue))
	if err != nil || got.IDToken != big.IDToken || got.ID != big.ID {
		t.Fatalf("the deflated session did not load back: %v", err)
	}
}

// With several cookies of the name, a value the store opened before is
// still found by net/http's rule (the first with a valid value).
func TestOpenedCache_PicksTheSameCookieAsNetHTTP(t *testing.T) {
	t.Parallel()
	st, _, s, value := cookieStoreForTest(t)
	if _, err := st.Load(requestWith(st.name, value)); err != nil { // now cached
		t.Fatal(err)
	}
	for _, header := range []string{
		st.name + "=bad\\value; " + st.name + "=" + value,
		st.name + "=" + value + "; " + st.name + "=second",
		"other=1; " + st.name + `="` + value + `"`,
	} {
		r := httptest.NewRequest(http.MethodGet, "/profile", nil)
		r.Header.Set("Cookie", header)
		got, err := st.Load(r)
		if err != nil || got.ID != s.ID {
			t.Errorf("Cookie %.60q...: %v, %v", header, got, err)
		}
		if c, err := r.Cookie(st.name); err != nil || c.Value != value {
			t.Errorf("Cookie %.60q...: net/http picks another cookie (%v)", header, err)
		}
	}
}
