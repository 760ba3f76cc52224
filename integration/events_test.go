package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/oidc-session/oidc_session/internal/testcaddy"
)

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// eventRecorder is an events handler that keeps what it is told, for tests.
type eventRecorder struct{}

var (
	recordedMu sync.Mutex
	recorded   []string
)

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.oidc_session_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recordedMu.Lock()
	defer recordedMu.Unlock()
	sub, _ := e.Data["sub"].(string)
	reason, _ := e.Data["reason"].(string)
	recorded = append(recorded, e.Name()+" "+sub+" "+reason)
	return nil
}

func TestSessionEvents(t *testing.T) {
	testcaddy.ExtraApps = map[string]any{"events": map[string]any{"subscriptions": []any{map[string]any{
		"events":   []string{"oidc_session.session_created", "oidc_session.session_refreshed", "oidc_session.session_ended"},
		"handlers": []any{map[string]any{"handler": "oidc_session_test_recorder"}},
	}}}}
	defer func() { testcaddy.ExtraApps = nil }()
	recordedMu.Lock()
	recorded = nil
	recordedMu.Unlock()

	idp := testcaddy.StartMockIdP(t, 3*time.Second, false)
	base := testcaddy.StartCaddy(t, testcaddy.SiteConfig(idp, ""))
	b := testcaddy.NewBrowser(t)
	b.Login(base + "/")
	time.Sleep(2200 * time.Millisecond)
	b.Navigate(base + "/")
	b.Navigate(base + "/oauth2/sign_out")

	recordedMu.Lock()
	got := strings.Join(recorded, "\n")
	recordedMu.Unlock()
	want := "oidc_session.session_created 1234567890 \noidc_session.session_refreshed 1234567890 \noidc_session.session_ended 1234567890 local"
	if got != want {
		t.Errorf("events:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(got, "eyJ") {
		t.Errorf("an event carries a token")
	}
}
