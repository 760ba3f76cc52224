package oidcsession

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/oidc-session/oidc_session/sessions"
)

// Observability: every store call is timed (metrics) and, when Caddy's
// tracing handler put a span in the request context, traced as a child
// span; session lifecycle changes are Caddy events.

// span starts a child of the request's span. Without tracing the request
// carries a no-op span, and so is this one.
func span(ctx context.Context, name string) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer("oidc_session").Start(ctx, name)
}

func endSpan(s trace.Span, err error) {
	if err != nil {
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

func (h *Handler) storeLoad(ctx context.Context, value string) (*sessions.Session, error) {
	if s := h.cache.get(value); s != nil {
		checker, ok := h.store.(sessions.Checker)
		if !ok {
			return s, nil
		}
		ctx, sp := span(ctx, "oidc_session.store.exists")
		start := time.Now()
		exists, err := checker.Exists(ctx, value)
		observeStore(h.storeName, storeOpLoad, start)
		endSpan(sp, err)
		switch {
		case err != nil:
			return nil, err
		case !exists:
			h.cache.drop(value)
			return nil, sessions.ErrNoSession
		}
		return s, nil
	}
	return h.storeLoadFresh(ctx, value)
}

// storeLoadFresh reads the session from its store, never from the cache:
// for refreshes, where a copy older than the store's could hold a refresh
// token another instance has already redeemed.
func (h *Handler) storeLoadFresh(ctx context.Context, value string) (*sessions.Session, error) {
	ctx, sp := span(ctx, "oidc_session.store.load")
	defer observeStore(h.storeName, storeOpLoad, time.Now())
	s, err := h.store.Load(ctx, value)
	endSpan(sp, ignoreNoSession(err))
	if err == nil {
		h.cache.put(value, s)
	}
	return s, err
}

func (h *Handler) storeSave(ctx context.Context, prev string, s *sessions.Session) (string, error) {
	ctx, sp := span(ctx, "oidc_session.store.save")
	defer observeStore(h.storeName, storeOpSave, time.Now())
	v, err := h.store.Save(ctx, prev, s)
	endSpan(sp, err)
	if err == nil {
		if prev != "" && prev != v {
			h.cache.drop(prev)
		}
		h.cache.put(v, s)
	}
	return v, err
}

func (h *Handler) storeDelete(ctx context.Context, value string) error {
	h.cache.drop(value)
	ctx, sp := span(ctx, "oidc_session.store.delete")
	defer observeStore(h.storeName, storeOpDelete, time.Now())
	err := h.store.Delete(ctx, value)
	endSpan(sp, err)
	return err
}

// idpSpan traces one call to the IdP.
func idpSpan(ctx context.Context, what string) (context.Context, trace.Span) {
	ctx, sp := span(ctx, "oidc_session.idp."+what)
	sp.SetAttributes(attribute.String("oidc_session.idp.call", what))
	return ctx, sp
}

func ignoreNoSession(err error) error {
	if err == sessions.ErrNoSession {
		return nil
	}
	return err
}

// Event names, emitted through Caddy's events app with the subject (never
// a token) as data.
const (
	eventCreated   = "oidc_session.session_created"
	eventRefreshed = "oidc_session.session_refreshed"
	eventEnded     = "oidc_session.session_ended"
)

func (h *Handler) emit(name string, s *sessions.Session, reason string) {
	if h.events == nil || s == nil {
		return
	}
	data := map[string]any{"sub": s.Subject, "store": h.storeName}
	if reason != "" {
		data["reason"] = reason
	}
	h.events.Emit(h.ctx, name, data)
}

// provisionObservability registers the metrics into this config's
// registry and finds the events app.
func (h *Handler) provisionObservability(ctx caddy.Context) error {
	h.ctx = ctx
	h.storeName = storeName(h.store)
	// Only an events app that exists (configured, or loaded by another
	// module) has subscribers; without one there is nobody to tell.
	if app, err := ctx.AppIfConfigured("events"); err == nil {
		h.events, _ = app.(*caddyevents.App)
	}
	return registerMetrics(ctx.GetMetricsRegistry(), countActiveSessions)
}

// countActiveSessions counts the live sessions of every server-side store.
func countActiveSessions(ctx context.Context) map[string]int {
	managers, _ := registry.managers()
	out := map[string]int{}
	for _, m := range managers {
		n, err := m.Count(ctx)
		if err != nil {
			continue
		}
		out[storeName(m.(sessions.Store))] += n
	}
	return out
}
