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

// SignIn starts a sign-in: POST /auth/signin/zitadel (the sign-in page's
// form), or GET /auth/signin with SIGNIN_PAGE=skip (SignInEntry). The
// attempt's state, nonce, PKCE verifier and return URL go into a sealed
// cookie of its own, and the browser to the provider.
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
				CallbackURL: rp.acceptedReturnURL(returnParam(r)),
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

// ReturnURL is where a sign-in asked to return to raw ends: raw itself
// when the return-URL policy accepts it (a page of Gatehouse, or a page of
// a protected app on an ALLOWED_REDIRECT_HOSTS host), else the post-login
// URL with ok false. The sign-in page, the sign-in start and the callback
// all ask here, so they cannot disagree.
func (rp *RelyingParty) ReturnURL(raw string) (target string, ok bool) {
	if rp.redirects != nil {
		return rp.redirects.Resolve(raw)
	}
	if raw != "" && config.IsLocalPath(raw) {
		return raw, true
	}
	return rp.cfg.PostLoginURL, false
}

// acceptedReturnURL is raw resolved by the policy, or "" when refused.
func (rp *RelyingParty) acceptedReturnURL(raw string) string {
	if t, ok := rp.ReturnURL(raw); ok {
		return t
	}
	return ""
}

// returnParam is the return URL a sign-in request carries: the form's
// callbackUrl (the sign-in page), or the query's rd (ingress-nginx's
// auth-signin and Gatehouse's forward-auth redirect name it so) or
// callbackUrl (Gatehouse's own pages).
func returnParam(r *http.Request) string {
	if r.Method == http.MethodPost {
		return r.PostFormValue("callbackUrl")
	}
	q := r.URL.Query()
	if v := q.Get("rd"); v != "" {
		return v
	}
	return q.Get("callbackUrl")
}

// SignInEntry is GET /auth/signin: the sign-in page, whose button starts
// the sign-in (one click between a protected app and ZITADEL). With
// SIGNIN_PAGE=skip, a visit that carries an accepted return URL (a
// protected app or one of Gatehouse's pages sent the browser here) goes
// straight on to start (no click at all); the page still shows for a
// visit without one, after an error (error=..., which would otherwise
// loop back to the provider), and for a browser that has a valid session
// here: the protected app did not receive it (a cookie domain that does
// not reach the app), and starting again would only loop.
//
// Starting a sign-in on a GET is no login CSRF: it only sets this
// browser's own pending-sign-in cookie and sends it to the provider. A
// session starts only at the callback, with a code that must match the
// state and PKCE verifier in that very cookie, so an attacker cannot
// make a victim's browser finish the attacker's sign-in. At worst a
// foreign page makes the victim sign in as themselves and land on a page
// the return-URL policy allows; start is rate-limited like the POST.
func (rp *RelyingParty) SignInEntry(page, start http.Handler) http.Handler {
	if !rp.cfg.SkipSignInPage {
		return page
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Get("error") == "" && rp.acceptedReturnURL(returnParam(r)) != "" && !rp.signedIn(r) {
			start.ServeHTTP(w, r)
			return
		}
		page.ServeHTTP(w, r)
	})
}

// signedIn: the request carries a valid, unexpired session.
func (rp *RelyingParty) signedIn(r *http.Request) bool {
	s, err := rp.sessions.Load(r)
	return err == nil && !s.Expired(rp.now(), rp.cfg.IdleTimeout)
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
