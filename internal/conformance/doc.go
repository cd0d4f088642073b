// Package conformance holds Gatehouse's relying-party conformance suite,
// modelled on the OpenID Foundation's RP certification plans (Basic and
// Config RP, the rp-* tests). It is test code only: op_test.go is an
// identity provider that can be told to misbehave (forged signatures,
// alg none, wrong iss/aud/azp/nonce, missing claims, unknown keys, a
// userinfo for another subject, a lying discovery document ...), and
// rp_test.go runs Gatehouse against each misbehaviour and checks that no
// session results, the user sees a friendly page, the span says why, and
// the process keeps serving.
package conformance
