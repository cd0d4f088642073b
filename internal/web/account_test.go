package web

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/gatehouse/gatehouse/internal/session"
)

func idTokenWith(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

func TestAccounts_FollowTheSessionsTokens(t *testing.T) {
	t.Parallel()
	c := newAccounts(8)
	s := &session.Session{Subject: "u1", IDToken: idTokenWith(t, map[string]any{"sub": "u1", "name": "Alice Admin"}),
		Userinfo: []byte(`{"email":"alice@example.com"}`), CreatedAt: 1_800_000_000, ExpiresAt: 1_800_003_600}
	first := c.of(s)
	if first.userName != "Alice Admin" || first.profile.Email != "alice@example.com" || first.profile.Initials != "AA" {
		t.Fatalf("account = %+v", first)
	}
	same := *s // another request's copy of the same session
	if c.of(&same) != first {
		t.Error("the same session content was computed again")
	}
	// A refresh brings new tokens: the pages must show what they say.
	refreshed := *s
	refreshed.IDToken = idTokenWith(t, map[string]any{"sub": "u1", "name": "Alice Renamed"})
	refreshed.Userinfo = []byte(`{"email":"new@example.com"}`)
	if a := c.of(&refreshed); a.userName != "Alice Renamed" || a.profile.Email != "new@example.com" {
		t.Errorf("after a refresh the account still shows %q <%s>", a.userName, a.profile.Email)
	}
	other := *s
	other.ExpiresAt++
	if c.of(&other) == first {
		t.Error("a session with another end shares the first one's account")
	}
}

func TestAccounts_StayWithinTheirBound(t *testing.T) {
	t.Parallel()
	c := newAccounts(4)
	for i := range 20 {
		c.of(&session.Session{Subject: "u", IDToken: idTokenWith(t, map[string]any{"sub": "u", "n": i})})
	}
	if len(c.m) != 4 {
		t.Fatalf("%d accounts kept, want the bound of 4", len(c.m))
	}
}
