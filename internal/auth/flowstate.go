package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// flowState is what one sign-in attempt must remember between leaving for
// the provider and coming back: single-use, bound to this browser by a
// sealed cookie, and kept apart from the login session.
type flowState struct {
	State       string `json:"s"`
	Nonce       string `json:"n"`
	Verifier    string `json:"v"`
	CallbackURL string `json:"c,omitempty"`
}

// flowCookies stores each pending sign-in in its own cookie named after a
// hash of its state, so sign-ins started in parallel tabs never overwrite
// each other. At most maxFlows are kept; the oldest goes first.
type flowCookies struct {
	sealer *seal.Sealer
	secure bool
	ttl    time.Duration
	now    func() time.Time
}

const maxFlows = 5

var errNoFlow = errors.New("no pending sign-in for this state")

func (f flowCookies) prefix() string {
	if f.secure {
		return "__Host-gatehouse-flow-"
	}
	return "gatehouse-flow-"
}

func (f flowCookies) name(state string) string {
	sum := sha256.Sum256([]byte(state))
	return f.prefix() + hex.EncodeToString(sum[:6])
}

func (f flowCookies) put(w http.ResponseWriter, r *http.Request, fs flowState) error {
	type pending struct {
		name string
		at   time.Time
	}
	var existing []pending
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, f.prefix()) {
			continue
		}
		_, at, _, err := f.sealer.Open(c.Name, c.Value, f.ttl, f.now())
		if err != nil {
			f.clear(w, c.Name) // expired or not ours: drop it
			continue
		}
		existing = append(existing, pending{c.Name, at})
	}
	sort.Slice(existing, func(i, j int) bool { return existing[i].at.Before(existing[j].at) })
	for len(existing) >= maxFlows {
		f.clear(w, existing[0].name)
		existing = existing[1:]
	}
	b, err := json.Marshal(fs)
	if err != nil {
		return err
	}
	name := f.name(fs.State)
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: f.sealer.Seal(name, b, f.now()), Path: "/",
		MaxAge: int(f.ttl / time.Second), Secure: f.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

// take finds, checks and deletes the flow for state. The cookie is deleted
// whatever the outcome, so a state can be used once.
func (f flowCookies) take(w http.ResponseWriter, r *http.Request, state string) (flowState, error) {
	if state == "" || len(state) > 512 {
		return flowState{}, errNoFlow
	}
	name := f.name(state)
	c, err := r.Cookie(name)
	if err != nil {
		return flowState{}, errNoFlow
	}
	f.clear(w, name)
	b, _, _, err := f.sealer.Open(name, c.Value, f.ttl, f.now())
	if err != nil {
		return flowState{}, errNoFlow
	}
	var fs flowState
	if err := json.Unmarshal(b, &fs); err != nil {
		return flowState{}, errNoFlow
	}
	if subtle.ConstantTimeCompare([]byte(fs.State), []byte(state)) != 1 {
		return flowState{}, errNoFlow
	}
	return fs, nil
}

// drop deletes the flow cookie for state without checking it (the provider
// answered with an error for that attempt).
func (f flowCookies) drop(w http.ResponseWriter, state string) {
	if state != "" && len(state) <= 512 {
		f.clear(w, f.name(state))
	}
}

func (f flowCookies) clear(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: f.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// logoutCookie remembers the state sent to the provider's end_session
// endpoint so the logout callback can tell our own round trip from a forged one.
type logoutCookie struct {
	sealer *seal.Sealer
	secure bool
	ttl    time.Duration
	now    func() time.Time
}

func (l logoutCookie) name() string {
	if l.secure {
		return "__Host-gatehouse-logout"
	}
	return "gatehouse-logout"
}

func (l logoutCookie) put(w http.ResponseWriter, state string) {
	http.SetCookie(w, &http.Cookie{
		Name: l.name(), Value: l.sealer.Seal(l.name(), []byte(state), l.now()), Path: "/",
		MaxAge: int(l.ttl / time.Second), Secure: l.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func (l logoutCookie) take(w http.ResponseWriter, r *http.Request, state string) bool {
	c, err := r.Cookie(l.name())
	if err != nil {
		return false
	}
	http.SetCookie(w, &http.Cookie{Name: l.name(), Value: "", Path: "/", MaxAge: -1,
		Secure: l.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	want, _, _, err := l.sealer.Open(l.name(), c.Value, l.ttl, l.now())
	return err == nil && state != "" && subtle.ConstantTimeCompare(want, []byte(state)) == 1
}

// randomString returns n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
