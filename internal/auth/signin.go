package auth

import (
	"context"
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

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/seal"
)

// SignIn starts a sign-in: POST /auth/signin/zitadel. The attempt's state,
// nonce, PKCE verifier and return URL go into a sealed cookie of its own,
// and the browser to the provider.
func (rp *RelyingParty) SignIn() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var authURL string
		err := rp.step(r.Context(), "auth.signin", func(ctx context.Context) error {
			relyingParty, err := rp.provider.RP()
			if err == nil {
				err = rp.provider.Available(ctx)
			}
			if err != nil {
				return fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, err)
			}
			fs := pendingSignIn{
				State:       randomString(32),
				Nonce:       randomString(32),
				Verifier:    oauth2.GenerateVerifier(),
				CallbackURL: returnURL(r.PostFormValue("callbackUrl")),
			}
			rp.signIns.put(w, r, fs)
			authURL = authorizeURL(relyingParty, fs)
			return nil
		})
		if err != nil {
			rp.log.WarnContext(r.Context(), "sign-in refused: identity provider unavailable", "reason", ReasonProviderUnavailable, "error", safeError(err))
			rp.respond(w, r, err)
			return
		}
		http.Redirect(w, r, authURL, http.StatusSeeOther)
	})
}

func authorizeURL(relyingParty oidcrp.RelyingParty, fs pendingSignIn) string {
	return oidcrp.AuthURL(fs.State, relyingParty,
		oidcrp.WithCodeChallenge(oidc.NewSHACodeChallenge(fs.Verifier)),
		oidcrp.AuthURLOpt(oidcrp.WithURLParam("nonce", fs.Nonce)),
	)
}

// returnURL is where a sign-in may send the browser back: a same-site
// path, or "" (then the configured post-login URL).
func returnURL(callbackURL string) string {
	if !config.IsLocalPath(callbackURL) {
		return ""
	}
	return callbackURL
}

// pendingSignIn is what one sign-in attempt must remember between leaving for
// the provider and coming back: single-use, bound to this browser by a
// sealed cookie, and kept apart from the login session.
type pendingSignIn struct {
	State       string `json:"s"`
	Nonce       string `json:"n"`
	Verifier    string `json:"v"`
	CallbackURL string `json:"c,omitempty"`
}

// signInCookies stores each pending sign-in in its own cookie named after a
// hash of its state, so sign-ins started in parallel tabs never overwrite
// each other. At most maxPendingSignIns are kept; the oldest goes first.
type signInCookies struct{ flowCookies }

const maxPendingSignIns = 5

var errNoPendingSignIn = errors.New("no pending sign-in for this state")

func (f signInCookies) prefix() string { return f.cookieName("gatehouse-flow-") }

func (f signInCookies) name(state string) string {
	sum := sha256.Sum256([]byte(state))
	return f.prefix() + hex.EncodeToString(sum[:6])
}

func (f signInCookies) put(w http.ResponseWriter, r *http.Request, fs pendingSignIn) {
	type pending struct {
		name string
		at   time.Time
	}
	var existing []pending
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, f.prefix()) {
			continue
		}
		_, at, err := f.open(c.Name, c.Value)
		if err != nil {
			f.clear(w, c.Name) // expired or not ours: drop it
			continue
		}
		existing = append(existing, pending{c.Name, at})
	}
	sort.Slice(existing, func(i, j int) bool { return existing[i].at.Before(existing[j].at) })
	for len(existing) >= maxPendingSignIns {
		f.clear(w, existing[0].name)
		existing = existing[1:]
	}
	b, _ := json.Marshal(fs) // strings only: cannot fail
	f.set(w, f.name(fs.State), b)
}

// take finds, checks and deletes the pending sign-in for state. The cookie is deleted
// whatever the outcome, so a state can be used once.
func (f signInCookies) take(w http.ResponseWriter, r *http.Request, state string) (pendingSignIn, error) {
	if state == "" || len(state) > 512 {
		return pendingSignIn{}, errNoPendingSignIn
	}
	name := f.name(state)
	c, err := r.Cookie(name)
	if err != nil {
		return pendingSignIn{}, errNoPendingSignIn
	}
	f.clear(w, name)
	b, _, err := f.open(name, c.Value)
	if err != nil {
		return pendingSignIn{}, errNoPendingSignIn
	}
	var fs pendingSignIn
	if err := json.Unmarshal(b, &fs); err != nil {
		return pendingSignIn{}, errNoPendingSignIn
	}
	if subtle.ConstantTimeCompare([]byte(fs.State), []byte(state)) != 1 {
		return pendingSignIn{}, errNoPendingSignIn
	}
	return fs, nil
}

// drop deletes the sign-in cookie for state without checking it (the provider
// answered with an error for that attempt).
func (f signInCookies) drop(w http.ResponseWriter, state string) {
	if state != "" && len(state) <= 512 {
		f.clear(w, f.name(state))
	}
}

// flowCookies are the short-lived sealed cookies of the sign-in and
// logout round trips: HttpOnly, SameSite=Lax, for the whole site, with the
// __Host- prefix over https.
type flowCookies struct {
	sealer *seal.Sealer
	secure bool
	ttl    time.Duration
	now    func() time.Time
}

func (c flowCookies) cookieName(base string) string {
	if c.secure {
		return "__Host-" + base
	}
	return base
}

func (c flowCookies) set(w http.ResponseWriter, name string, value []byte) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: c.sealer.Seal(name, value, c.now()), Path: "/",
		MaxAge: int(c.ttl / time.Second), Secure: c.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func (c flowCookies) clear(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Path: "/", MaxAge: -1, Secure: c.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// open checks a value set within the lifetime and returns it and when it was set.
func (c flowCookies) open(name, value string) ([]byte, time.Time, error) {
	b, at, _, err := c.sealer.Open(name, value, c.ttl, c.now())
	return b, at, err
}

// randomString returns n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
