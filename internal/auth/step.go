package auth

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Failure reasons: short, stable codes for pages, spans, metrics and logs.
const (
	ReasonStateMismatch       = "state_mismatch"
	ReasonIssuerMismatch      = "issuer_mismatch"
	ReasonCodeMissing         = "code_missing"
	ReasonAccessDenied        = "access_denied"
	ReasonProviderError       = "provider_error"
	ReasonCodeExchangeFailed  = "code_exchange_failed"
	ReasonIDTokenInvalid      = "id_token_invalid"
	ReasonUserinfoFailed      = "userinfo_failed"
	ReasonUserinfoSubMismatch = "userinfo_sub_mismatch"
	ReasonProviderUnavailable = "provider_unavailable"
	ReasonProviderTimeout     = "provider_timeout"
	ReasonSessionExpired      = "session_expired"
	ReasonSessionTooLarge     = "session_too_large"
	ReasonSessionStore        = "session_store_unavailable"
	ReasonRefreshFailed       = "refresh_failed"
	ReasonNoSession           = "no_session"
	ReasonLogoutState         = "logout_state_mismatch"
	ReasonForbidden           = "forbidden"
	ReasonBackchannelLogout   = "backchannel_logout_rejected"
	ReasonClientClosed        = "client_closed" // the request ended before its answer (Abandoned)
	reasonInternal            = "internal"
)

// StatusClientClosed is the status logged for a request whose client went
// away before the answer (nginx's 499): nobody reads it, and it is no
// server error.
const StatusClientClosed = 499

// failure is a failed auth step: its reason, the HTTP status the user
// gets, and the cause (logged as safeError, never shown).
type failure struct {
	reason string
	status int
	err    error
}

func (f *failure) Error() string { return f.reason + ": " + safeError(f.err) }
func (f *failure) Unwrap() error { return f.err }

// withinProviderTimeout runs fn with the request's budget for the
// provider (Config.ProviderTimeout). A failure because that budget ran
// out, while the client still waits, becomes ReasonProviderTimeout
// (whatever step it interrupted), so the user learns that the provider was
// too slow rather than that something was wrong with the sign-in.
func (rp *RelyingParty) withinProviderTimeout(ctx context.Context, fn func(context.Context) error) error {
	budget, cancel := context.WithTimeout(ctx, rp.cfg.ProviderTimeout)
	defer cancel()
	err := fn(budget)
	if err != nil && errors.Is(budget.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return fail(ReasonProviderTimeout, http.StatusServiceUnavailable, err)
	}
	return err
}

// fail is err as a failure with reason and status; nil stays nil.
func fail(reason string, status int, err error) error {
	if err == nil {
		return nil
	}
	return &failure{reason: reason, status: status, err: err}
}

// failureOf is err's reason and status: those of the first failure in its
// chain (a step that passes an inner step's error on keeps its reason), or
// internal and 500.
func failureOf(err error) (reason string, status int) {
	var f *failure
	if errors.As(err, &f) {
		return f.reason, f.status
	}
	return reasonInternal, http.StatusInternalServerError
}

// step runs fn as the auth step name: a child span of ctx's (when the
// tracer records) that fn's context carries, and the step's outcome
// (auth.outcome, auth.failure.reason) and duration on the span and in the
// metrics. fn's error is returned as is.
func (rp *RelyingParty) step(ctx context.Context, name string, fn func(context.Context) error) error {
	return rp.stepOutcome(ctx, name, func(ctx context.Context) (string, error) { return "success", fn(ctx) })
}

// stepOutcome is step for a step that names its own outcome when it does
// not fail (auth.backchannel_logout: "success" or "no_match").
func (rp *RelyingParty) stepOutcome(ctx context.Context, name string, fn func(context.Context) (string, error)) error {
	return rp.runStep(ctx, name, true, fn)
}

// checkStep is step for the checks every protected request and every
// forward-auth decision runs (auth.session.load, auth.bearer.verify): the
// span as always, the metric only when the check fails. Their successes
// are counted by gatehouse.forward_auth.decisions and timed by the route's
// http.server.request.duration; one more histogram per request would cost
// a decision about what its whole session check costs
// (BenchmarkChain_VerifyBearer).
func (rp *RelyingParty) checkStep(ctx context.Context, name string, fn func(context.Context) error) error {
	return rp.runStep(ctx, name, false, func(ctx context.Context) (string, error) { return "success", fn(ctx) })
}

// runStep is stepOutcome, recording a successful outcome's metric only
// when successes is set.
func (rp *RelyingParty) runStep(ctx context.Context, name string, successes bool, fn func(context.Context) (string, error)) error {
	start := time.Now()
	span := trace.SpanFromContext(context.Background()) // a no-op span; never end the caller's
	if rp.tracing {
		ctx, span = rp.tracer.Start(ctx, name)
	}
	outcome, err := fn(ctx)
	reason := ""
	if err != nil {
		outcome, reason = "failure", failedStep(span, err)
	} else if span.IsRecording() { // the attribute costs an allocation even when nothing records it
		span.SetAttributes(attribute.String("auth.outcome", outcome))
	}
	span.End()
	if rp.observer != nil && (successes || err != nil) {
		rp.observer.Step(ctx, name, outcome, reason, time.Since(start))
	}
	return err
}

// failedStep records a step's failure on its span and returns the
// failure's reason. It is out of runStep's frame, which every decision has
// on its stack (docs/PERFORMANCE.md, "The decision's stack").
//
//go:noinline
func failedStep(span trace.Span, err error) (reason string) {
	reason, _ = failureOf(err)
	span.SetAttributes(attribute.String("auth.outcome", "failure"), attribute.String("auth.failure.reason", reason))
	span.RecordError(errors.New(safeError(err)))
	span.SetStatus(codes.Error, reason)
	return reason
}

// respond answers a failed step with its friendly page: the status and
// reason of the failure, and Retry-After where trying again later helps
// (the provider or the session store is unavailable). Every "try again"
// answer of the relying party comes from here.
func (rp *RelyingParty) respond(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away: the failure is the cancelled calls', and
		// no page would arrive (TestAbandoned_ClientThatLeftIsNoOutage).
		w.WriteHeader(StatusClientClosed)
		return
	}
	reason, status := failureOf(err)
	switch reason {
	case ReasonProviderUnavailable, ReasonProviderTimeout:
		w.Header().Set("Retry-After", "10")
	case ReasonSessionStore:
		w.Header().Set("Retry-After", "5")
		rp.log.ErrorContext(r.Context(), "session store unavailable", "error", safeError(err))
	}
	rp.pages.Message(w, r, status, reason)
}
