package web

import (
	"net/http"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/templates"
)

// Message is a friendly page: never a raw error, never a value from the request.
type Message = templates.Message

// Action is a link on a message page.
type Action = templates.Action

var (
	home      = Action{Href: "/", Label: "Home", Secondary: true}
	tryAgain  = Action{Href: "/auth/signin", Label: "Sign in again"}
	toSignIn  = Action{Href: "/auth/signin", Label: "Sign in"}
	toProfile = Action{Href: "/profile", Label: "Profile", Secondary: true}
)

var messages = map[string]Message{
	auth.ReasonStateMismatch: {Title: "This sign-in link has expired",
		Text: "The sign-in could not be matched to one started in this browser (it may be older than 10 minutes, already used, or from another browser). Please start again."},
	auth.ReasonIssuerMismatch: {Title: "Sign-in rejected", Text: "The answer did not come from the expected identity provider."},
	auth.ReasonCodeMissing:    {Title: "Sign-in incomplete", Text: "The identity provider did not send an authorization code. Please start again."},
	auth.ReasonProviderError:  {Title: "The identity provider reported an error", Text: "Signing in did not complete. Please try again."},
	auth.ReasonAccessDenied:   {Title: "Sign-in cancelled", Text: "Access was denied at the identity provider."},
	auth.ReasonCodeExchangeFailed: {Title: "Sign-in could not be completed",
		Text: "The one-time sign-in code was rejected (it may have been used already or expired). Please sign in again."},
	auth.ReasonIDTokenInvalid: {Title: "Sign-in rejected",
		Text: "The identity token from the provider did not pass verification, so no session was started."},
	auth.ReasonUserinfoFailed: {Title: "Sign-in could not be completed", Text: "Your profile could not be read from the identity provider."},
	auth.ReasonUserinfoSubMismatch: {Title: "Sign-in rejected",
		Text: "The profile returned by the identity provider belongs to a different user than the token, so no session was started."},
	auth.ReasonProviderUnavailable: {Title: "Sign-in is temporarily unavailable", Tone: "warn",
		Text: "The identity provider cannot be reached right now. Pages that do not need a new sign-in still work; please try again in a moment."},
	auth.ReasonProviderTimeout: {Title: "The identity provider took too long", Tone: "warn",
		Text: "It did not answer in time, so your sign-in was not completed and nothing was changed. Please sign in again in a moment."},
	auth.ReasonSessionExpired: {Title: "Your session has ended", Tone: "warn", Text: "Please sign in again."},
	auth.ReasonSessionTooLarge: {Title: "Your session is too large",
		Text: "Your account's tokens do not fit in a browser cookie. The operator needs to switch to server-side sessions (SESSION_STORE=redis) or request fewer scopes."},
	auth.ReasonSessionStore: {Title: "Sessions are temporarily unavailable", Tone: "warn",
		Text: "Your session cannot be read right now. Please try again in a moment."},
	auth.ReasonRefreshFailed: {Title: "Your session has ended", Tone: "warn", Text: "Please sign in again."},
	auth.ReasonForbidden: {Title: "You do not have access to this page",
		Text: "Your account lacks the role this page needs. Ask an administrator of your ZITADEL organisation to grant it."},
	"not_found":      {Title: "Page not found", Text: "There is nothing at this address."},
	"logout_success": {Title: "You are signed out", Tone: "ok", Text: "Your session here and at ZITADEL has ended."},
	"logout_local": {Title: "You are signed out here", Tone: "warn",
		Text: "Your session here has ended, but the identity provider could not be reached to end your session there."},
	auth.ReasonLogoutState: {Title: "Sign-out could not be confirmed",
		Text: "Your session here has ended, but the answer from the identity provider could not be matched to this browser's sign-out."},
	"rate_limited": {Title: "Too many sign-in attempts", Tone: "warn",
		Text: "This address has started too many sign-ins in a short time. Please wait a minute and try again."},
	"internal":     {Title: "Something went wrong", Text: "Please try again."},
	"cross_origin": {Title: "Request refused", Text: "This form was sent from another site, so it was not accepted. Nothing was changed."},
}

func messageFor(code string, status int) Message {
	m, ok := messages[code]
	if !ok {
		m = Message{Title: "Something went wrong", Text: "Please try again."}
	}
	m.Status = status
	if m.Tone == "" {
		m.Tone = "error"
	}
	if m.Actions == nil {
		switch code {
		case "logout_success", "logout_local", auth.ReasonLogoutState:
			m.Actions = []Action{toSignIn, home}
		case auth.ReasonForbidden:
			m.Actions = []Action{toProfile, home}
		case "not_found":
			m.Actions = []Action{home}
		default:
			m.Actions = []Action{tryAgain, home}
		}
	}
	if status == http.StatusNotFound && code == "" {
		return messageFor("not_found", status)
	}
	return m
}

// signInMessage is the banner for /auth/signin?error=CODE; unknown codes
// get a generic text, so the URL cannot put words on the page.
func signInMessage(code string) *templates.Banner {
	if code == "" {
		return nil
	}
	m, ok := messages[code]
	if !ok {
		m = Message{Title: "Signing in did not complete", Text: "Please try again."}
	}
	return &templates.Banner{Title: m.Title + ".", Text: m.Text}
}
