package oidc

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/oauth2"
)

// UserInfoMode says when the userinfo endpoint's claims are added to the ID
// token's.
type UserInfoMode string

const (
	// UserInfoAuto fetches userinfo when the ID token lacks the claims of
	// a requested scope (OIDC Core 5.4: with the code flow, certified OPs
	// put email and profile claims only in userinfo). The default.
	UserInfoAuto UserInfoMode = ""
	// UserInfoOn always fetches it (when the IdP has the endpoint).
	UserInfoOn UserInfoMode = "on"
	// UserInfoOff never does.
	UserInfoOff UserInfoMode = "off"
)

// scopeClaims are the claims each scope asks for (OIDC Core 5.4), by which
// auto tells whether an ID token carries what the scope promised. groups
// is not standard; its claim is Config.GroupsClaim.
var scopeClaims = map[string][]string{
	"email":   {"email", "email_verified"},
	"profile": {"name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	"address": {"address"},
	"phone":   {"phone_number", "phone_number_verified"},
}

// wantsUserInfo decides whether to fetch userinfo for an ID token with
// these claims.
func (p *Provider) wantsUserInfo(d *Discovered, claims map[string]any) bool {
	if !d.HasUserInfo {
		return false
	}
	switch p.cfg.UserInfo {
	case UserInfoOn:
		return true
	case UserInfoOff:
		return false
	}
	for _, scope := range p.cfg.Scopes {
		names := scopeClaims[scope]
		if scope == "groups" && p.cfg.GroupsClaim != "" {
			names = []string{p.cfg.GroupsClaim}
		}
		if names == nil {
			continue
		}
		found := false
		for _, n := range names {
			if _, ok := claims[n]; ok {
				found = true
				break
			}
		}
		if !found {
			return true
		}
	}
	return false
}

// mergeUserInfo adds the userinfo endpoint's claims to the ID token's:
// those of the ID token win where both have one, and userinfo may not be
// for another subject.
func (p *Provider) mergeUserInfo(ctx context.Context, d *Discovered, tok *oauth2.Token, claims map[string]any) error {
	ui, err := d.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return fmt.Errorf("%w: userinfo: %w", ErrUnavailable, err)
	}
	if ui.Subject == "" || ui.Subject != claims["sub"] {
		return errors.New("userinfo subject differs from the ID token's")
	}
	var extra map[string]any
	if err := ui.Claims(&extra); err != nil {
		return fmt.Errorf("userinfo claims: %w", err)
	}
	for k, v := range extra {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
	return nil
}

// WantsUserInfo reports whether the claims of an ID token call for the
// userinfo endpoint's, by the configured UserInfoMode.
func (p *Provider) WantsUserInfo(d *Discovered, claims map[string]any) bool {
	return p.wantsUserInfo(d, claims)
}
