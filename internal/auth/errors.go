package auth

import (
	"context"
	"errors"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
)

// knownErrors are errors whose text is safe to log. Others are reduced to
// their type: some library messages quote the expected and received
// nonce, and nonces must never reach a log or a span. The first match
// wins, so the specific key errors come before the signature error that
// wraps them.
var knownErrors = []error{
	oidc.ErrNonceInvalid, oidc.ErrIssuerInvalid, oidc.ErrAudience, oidc.ErrAzpMissing, oidc.ErrAzpInvalid,
	oidc.ErrKeyMultiple, oidc.ErrKeyNone,
	oidc.ErrSignatureMissing, oidc.ErrSignatureMultiple, oidc.ErrSignatureUnsupportedAlg, oidc.ErrSignatureInvalidPayload,
	oidc.ErrSignatureInvalid, oidc.ErrExpired, oidc.ErrIatMissing, oidc.ErrIatInFuture, oidc.ErrIatToOld,
	oidc.ErrSubjectMissing, oidc.ErrAtHash, oidc.ErrParse,
	oidc.ErrDiscoveryFailed, oidcrp.ErrUserInfoSubNotMatching, oidcrp.ErrMissingIDToken, ErrProviderUnavailable,
	context.DeadlineExceeded, context.Canceled,
	errNoPendingSignIn, session.ErrNoSession, session.ErrTooLarge, session.ErrLoggedOut, session.ErrUnavailable, seal.ErrInvalid, seal.ErrExpired,
}

// safeErr is an error whose text Gatehouse wrote from constants (or vetted
// codes), so logs and spans can show it as is: an operator reading a failed
// sign-in sees "no code in callback", not just a type name.
type safeErr string

func (e safeErr) Error() string { return string(e) }

// safeError describes err without any value that could be a secret.
func safeError(err error) string {
	if err == nil {
		return ""
	}
	if f, ok := err.(*failure); ok {
		return safeError(f.err)
	}
	var denied *deniedError
	if errors.As(err, &denied) {
		return denied.Error()
	}
	var oe *oauthError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	var se safeErr
	if errors.As(err, &se) {
		return se.Error()
	}
	for _, k := range knownErrors {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return oauthErrorOf(re).Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The URL is a provider endpoint from discovery: no secret in it.
		u := ue.URL
		if p, perr := url.Parse(u); perr == nil {
			p.RawQuery, p.User = "", nil
			u = p.String()
		}
		reason := "request failed"
		if ue.Timeout() {
			reason = "timed out"
		} else if inner := ue.Err; inner != nil {
			var ne *net.OpError
			if errors.As(inner, &ne) {
				reason = ne.Op + " failed"
			}
		}
		return ue.Op + " " + u + ": " + reason
	}
	return "error of type " + reflect.TypeOf(err).String()
}

// oauthError is a provider's OAuth error answer (RFC 6749 §5.2), reduced
// to what a log may show: the error code, its description and the HTTP
// status. Both texts are cut to the characters RFC 6749 allows them
// (printable ASCII without '"' and '\\'), and to a length; the
// description loses any token the request carried and any run of
// token-like characters, so whatever a provider echoes, no credential
// reaches a log or a span.
type oauthError struct {
	code, desc string
	status     int
}

func (e *oauthError) Error() string {
	msg := "provider answered " + e.code + " (HTTP " + strconv.Itoa(e.status) + ")"
	if e.desc != "" {
		msg += ": " + e.desc
	}
	return msg
}

// oauthErrorOf reads re; secrets are values the request carried.
func oauthErrorOf(re *oauth2.RetrieveError, secrets ...string) *oauthError {
	e := &oauthError{code: printable(re.ErrorCode, 64), desc: re.ErrorDescription}
	if e.code == "" {
		e.code = "no error code"
	}
	if re.Response != nil {
		e.status = re.Response.StatusCode
	}
	for _, s := range secrets {
		if s != "" {
			e.desc = strings.ReplaceAll(e.desc, s, "[token]")
		}
	}
	e.desc = tokenLike.ReplaceAllString(printable(e.desc, 300), "[redacted]")
	return e
}

// tokenLike is a JWT (its header always starts eyJ), or a run of
// characters long enough to be a token or a code (base64url, UUIDs); words
// in a description are shorter, and ZITADEL's dotted message keys
// (Errors.User.RefreshToken.Invalid) are kept.
var tokenLike = regexp.MustCompile(`eyJ[A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]*){0,4}|[A-Za-z0-9_\-+/=~]{24,}`)

// printable keeps RFC 6749's error characters (%x20-21 / %x23-5B /
// %x5D-7E) of s, at most n bytes.
func printable(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isUnavailable tells a provider that cannot be reached (or answers 5xx)
// from one that said no.
func isUnavailable(err error) bool {
	if errors.Is(err, ErrProviderUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.Response != nil && re.Response.StatusCode >= 500
	}
	var oe *oauthError
	if errors.As(err, &oe) {
		return oe.status >= 500
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue)
}
