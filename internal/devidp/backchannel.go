package devidp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// SessionID is subject's current provider session ID (the sid its ID
// tokens carry), or "" when the user has no session at the provider.
func (p *Provider) SessionID(subject string) string {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	return p.store.sids[subject]
}

// SignJWT signs claims (any JSON object) with the current signing key, as
// the provider signs its tokens. Tests use it to build logout tokens that
// differ from a good one in exactly one way.
func (p *Provider) SignJWT(claims any, typ string) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	k := p.store.keys.current()
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), k.id)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.key}, opts)
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return jws.CompactSerialize()
}

// LogoutTokenClaims are the claims of a logout token for subject at
// clientID, with the subject's current provider session ID (if any) and a
// fresh jti, valid for two minutes.
func (p *Provider) LogoutTokenClaims(clientID, subject string) *oidc.LogoutTokenClaims {
	return oidc.NewLogoutTokenClaims(p.issuer, subject, oidc.Audience{clientID},
		time.Now().Add(2*time.Minute), randomID(), p.SessionID(subject), 0)
}

// BackchannelLogout ends subject's provider session and tells every client
// with a BackchannelLogoutURI, as ZITADEL does when a session ends there:
// one signed logout_token per client, POSTed as a form.
func (p *Provider) BackchannelLogout(ctx context.Context, subject string) error {
	claims := map[string]*oidc.LogoutTokenClaims{}
	for id, c := range p.store.clients {
		if c.BackchannelLogoutURI != "" {
			claims[id] = p.LogoutTokenClaims(id, subject)
		}
	}
	p.store.endSession(subject)
	var errs []error
	for id, c := range claims {
		token, err := p.SignJWT(c, "logout+jwt")
		if err == nil {
			err = p.SendLogoutToken(ctx, p.store.clients[id].BackchannelLogoutURI, token)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("client %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// SendLogoutToken POSTs token to uri as a back-channel logout request and
// returns an error unless the client answers 200.
func (p *Provider) SendLogoutToken(ctx context.Context, uri, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri,
		strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("back-channel logout: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("back-channel logout: %s answered %d: %s", uri, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
