package oidcsession

import (
	"context"
	"errors"
	"fmt"

	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/oidc"
	"github.com/oidc-session/oidc_session/sessions"
)

// refresher renews a session's tokens at the IdP for the lifecycle: the
// token call, then the claims of a new ID token mapped into the identity
// as at login. The lifecycle decides when, and makes sure a refresh token
// is redeemed once per instance.
type refresher struct{ h *Handler }

// Refresh implements lifecycle.Refresher. A refusal by a reachable IdP
// (invalid_grant or any other) and tokens that cannot be accepted are
// final (lifecycle.ErrRefused); an IdP that cannot be reached is not.
func (rf refresher) Refresh(ctx context.Context, s *sessions.Session) (*sessions.Session, error) {
	h := rf.h
	// A session is refreshed at its own IdP only. One whose IdP this
	// handler does not know is not ended (not a final answer): it may be
	// another handler's, which refreshes it.
	p := h.idpOf(s)
	if p == nil {
		metricRefreshFailure(nil, refreshFailureOther)
		return nil, fmt.Errorf("the session's identity provider (%s) is not one of this handler's", s.Issuer)
	}
	ctx, err := p.withSessionDPoPKey(ctx, s)
	if err != nil {
		metricRefreshFailure(p, refreshFailureOther)
		return nil, fmt.Errorf("%w: the session's DPoP key: %w", lifecycle.ErrRefused, err)
	}
	ctx, sp := idpSpan(ctx, "refresh")
	t, err := p.refreshTokens(ctx, s.RefreshToken, s.IDToken)
	endSpan(sp, err)
	switch {
	case errors.Is(err, oidc.ErrInvalidGrant):
		metricRefreshFailure(p, refreshFailureInvalidGrant)
		return nil, fmt.Errorf("%w: %w", lifecycle.ErrRefused, err)
	case errors.Is(err, oidc.ErrUnavailable):
		metricRefreshFailure(p, refreshFailureUnavailable)
		return nil, err
	case err != nil:
		metricRefreshFailure(p, refreshFailureOther)
		return nil, fmt.Errorf("%w: %w", lifecycle.ErrRefused, err)
	}
	out := *s
	if t.Claims != nil {
		// OIDC Core 12.2 does not make the IdP repeat the profile claims
		// in a refreshed ID token: a claim it leaves out keeps its value
		// from the token the session had (verified when it was issued),
		// or the email or groups the rules rely on would vanish.
		claims := t.Claims
		if previous, err := oidc.UnverifiedClaims(s.IDToken); err == nil {
			claims = previous
			for k, v := range t.Claims {
				claims[k] = v
			}
		}
		if err := h.applyClaims(&out, claims); err != nil {
			metricRefreshFailure(p, refreshFailureOther)
			return nil, fmt.Errorf("%w: refreshed ID token: %w", lifecycle.ErrRefused, err)
		}
		if out.Subject != s.Subject {
			metricRefreshFailure(p, refreshFailureOther)
			return nil, fmt.Errorf("%w: refreshed ID token is for another subject", lifecycle.ErrRefused)
		}
	}
	applyTokens(&out, t)
	if !p.dpop {
		out.DPoPKey = nil // the new tokens are not bound to it
	}
	metricRefresh(p)
	h.emit(eventRefreshed, &out, "")
	return &out, nil
}

// refreshTokens redeems a refresh token at the IdP.
func (p *idp) refreshTokens(ctx context.Context, refreshToken, previousIDToken string) (*oidc.Tokens, error) {
	d, err := p.provider.Discover(ctx)
	if err != nil {
		return nil, err
	}
	return p.provider.Refresh(ctx, d, refreshToken, previousIDToken)
}
