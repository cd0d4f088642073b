package auth

import (
	"context"
	"errors"
	"net"
	"net/url"
	"reflect"
	"strconv"

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
	errNoPendingSignIn, session.ErrNoSession, session.ErrTooLarge, session.ErrUnavailable, seal.ErrInvalid, seal.ErrExpired,
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
		code := re.ErrorCode
		if code == "" {
			code = "no error code"
		}
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return "provider rejected the request: " + code + " (HTTP " + strconv.Itoa(status) + ")"
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
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue)
}
