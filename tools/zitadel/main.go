// Command zitadel-op runs the example OpenID Provider of
// github.com/zitadel/oidc/v3 (example/server: its exampleop router with the
// username/password login page, and its in-memory storage with the static
// users and clients) for the end-to-end tests of oidc_session.
//
// The upstream example/server main listens on all interfaces, fixes the
// issuer to http://localhost:<port>/, registers clients without any
// post-logout redirect URI (so every RP-initiated logout that names one is
// refused) and issues access tokens for 5 minutes. This main uses the same
// packages but is configured by the environment:
//
//	ADDR                      listen address, loopback only (default 127.0.0.1:9998)
//	ISSUER                    issuer (default http://<ADDR>/)
//	REDIRECT_URI              comma-separated redirect URIs of the clients
//	                          "web" (secret "secret", client_secret_basic or
//	                          _post, PKCE optional) and "native" (public,
//	                          PKCE required)
//	POST_LOGOUT_REDIRECT_URI  comma-separated post_logout_redirect_uri values
//	                          the end_session endpoint accepts for both clients
//	ACCESS_TOKEN_TTL          lifetime of access tokens that the token
//	                          response reports (expires_in; Go duration;
//	                          default the example's 5m). The example's
//	                          storage still ends every access token after
//	                          5m (introspection answers inactive, userinfo
//	                          refuses it): only shorter values are real.
//
// Users (storage.NewUserStore): "test-user2" / "verysecure" (sub "id2",
// email test-user2@zitadel.ch) and "test-user@<issuer host>" / "verysecure"
// (sub "id1").
//
// Build: scripts/install-deps.sh (cd tools/zitadel && go build -o ../../.bin/zitadel-op .).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// store is the example's in-memory storage with configurable post-logout
// redirect URIs and access token lifetime.
type store struct {
	*storage.Storage
	postLogout []string
	accessTTL  time.Duration
}

// client adds the configured post-logout redirect URIs to an example client.
type client struct {
	op.Client
	postLogout []string
}

func (c client) PostLogoutRedirectURIs() []string { return c.postLogout }

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return client{Client: c, postLogout: s.postLogout}, nil
}

func (s *store) expiry(exp time.Time) time.Time {
	if s.accessTTL > 0 {
		return time.Now().UTC().Add(s.accessTTL)
	}
	return exp
}

func (s *store) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, req)
	return id, s.expiry(exp), err
}

func (s *store) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	id, refresh, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, current)
	return id, refresh, s.expiry(exp), err
}

func list(env string) []string {
	var out []string
	for _, v := range strings.Split(os.Getenv(env), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func run() error {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:9998"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("ADDR %q: only a loopback IP address is allowed", addr)
	}
	issuer := os.Getenv("ISSUER")
	if issuer == "" {
		issuer = "http://" + addr + "/"
	}
	var ttl time.Duration
	if v := os.Getenv("ACCESS_TOKEN_TTL"); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil || ttl <= 0 {
			return fmt.Errorf("ACCESS_TOKEN_TTL %q: want a positive duration", v)
		}
	}
	redirects := list("REDIRECT_URI")
	storage.RegisterClients(
		storage.NativeClient("native", redirects...),
		storage.WebClient("web", "secret", redirects...),
	)

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st := &store{
		Storage:    storage.NewStorage(storage.NewUserStore(issuer)),
		postLogout: list("POST_LOGOUT_REDIRECT_URI"),
		accessTTL:  ttl,
	}
	router := exampleop.SetupServer(issuer, st, logger, false)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	logger.Info("zitadel example OP listening", "addr", ln.Addr().String(), "issuer", issuer,
		"redirect_uris", redirects, "post_logout_redirect_uris", st.postLogout, "access_token_ttl", ttl)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "zitadel-op:", err)
		os.Exit(1)
	}
}
