package testidp

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/oidc-session/oidc_session/internal/browser"
)

// TestOIDCProviderInChromium drives the login and logout pages with the
// exported selectors, as a browser test of the plugin would.
func TestOIDCProviderInChromium(t *testing.T) {
	redirectURI := rpCallback(t, "/callback")
	postLogout := rpCallback(t, "/signed-out")
	op := StartOIDCProvider(t, OIDCProviderOptions{RedirectURIs: []string{redirectURI}, PostLogoutRedirectURIs: []string{postLogout}})
	tab := browser.Start(t, 60*time.Second).First
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab.Ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	waitURL := func(what, prefix string) browser.Page {
		t.Helper()
		p, err := browser.WaitPage(tab.Ctx, 15*time.Second, func(p browser.Page) bool { return strings.HasPrefix(p.URL, prefix) })
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		return p
	}

	conf := opOAuth(op, op.Basic, oauth2.AuthStyleInHeader, redirectURI, "openid")
	run("open the authorization URL", chromedp.Navigate(conf.AuthCodeURL("st")))
	run("wrong password",
		chromedp.SendKeys(chromedp.CSS(OPLoginNameSelector), op.User.Login),
		chromedp.SendKeys(chromedp.CSS(OPLoginPasswordSelector), "wrong"),
		chromedp.Click(chromedp.CSS(OPLoginSubmitSelector)),
		chromedp.WaitVisible(chromedp.CSS(OPLoginErrorSelector)),
	)
	run("log in",
		chromedp.SendKeys(chromedp.CSS(OPLoginNameSelector), op.User.Login),
		chromedp.SendKeys(chromedp.CSS(OPLoginPasswordSelector), op.User.Password),
		chromedp.Click(chromedp.CSS(OPLoginSubmitSelector)),
	)
	p := waitURL("the callback", redirectURI+"?")
	u, _ := url.Parse(p.URL)
	if u.Query().Get("code") == "" || u.Query().Get("state") != "st" || u.Query().Get("iss") != op.Issuer {
		t.Fatalf("callback %s lacks code, state or iss", p.URL)
	}

	q := url.Values{"client_id": {op.Basic.ID}, "post_logout_redirect_uri": {postLogout}}
	run("open the end_session endpoint", chromedp.Navigate(op.Issuer+"/session/end?"+q.Encode()))
	run("confirm the logout", chromedp.Click(chromedp.CSS(OPLogoutConfirmSelector)))
	waitURL("the post-logout page", postLogout)
}
