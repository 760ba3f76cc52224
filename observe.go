package oidcsession

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/sessions"
)

// Observability: every store call is timed (metrics) and, when Caddy's
// tracing handler put a span in the request context, traced as a child
// span; session lifecycle changes are Caddy events.

// span starts a child of the request's span. Without tracing the request
// carries a no-op span, and so is this one.
func span(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		// No tracing, or this request not sampled: a child would record
		// nothing either, and making it costs every request an allocation.
		return ctx, parent
	}
	return parent.TracerProvider().Tracer("oidc_session").Start(ctx, name)
}

func endSpan(s trace.Span, err error) {
	if err != nil {
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// storeSpanName is the span name of a store call: a constant for each
// operation, so that no request builds it.
func storeSpanName(op lifecycle.StoreOp) string {
	switch op {
	case lifecycle.OpExists:
		return "oidc_session.store.exists"
	case lifecycle.OpLoad:
		return "oidc_session.store.load"
	case lifecycle.OpSave:
		return "oidc_session.store.save"
	case lifecycle.OpDelete:
		return "oidc_session.store.delete"
	}
	return "oidc_session.store." + string(op)
}

// storeCall traces and times one store call (lifecycle.Hooks.Store).
func (h *Handler) storeCall(ctx context.Context, op lifecycle.StoreOp) (context.Context, func(error)) {
	ctx, sp := span(ctx, storeSpanName(op))
	metricOp := storeOpLoad // an existence check is part of loading a session
	switch op {
	case lifecycle.OpSave:
		metricOp = storeOpSave
	case lifecycle.OpDelete:
		metricOp = storeOpDelete
	}
	start := time.Now()
	return ctx, func(err error) {
		observeStore(h.storeName, metricOp, start)
		endSpan(sp, err)
	}
}

// sessionEnded counts and announces the end of a session
// (lifecycle.Hooks.Ended); reason is a logouts_total kind.
func (h *Handler) sessionEnded(s *sessions.Session, reason lifecycle.Reason) {
	kind := string(reason)
	if reason == lifecycle.ReasonRefused {
		kind = logoutOther
	}
	var p *idp
	if s != nil {
		p = h.idpOf(s)
	}
	metricLogout(p, kind)
	h.emit(eventEnded, s, kind)
}

// idpSpan traces one call to the IdP.
func idpSpan(ctx context.Context, what string) (context.Context, trace.Span) {
	ctx, sp := span(ctx, "oidc_session.idp."+what)
	sp.SetAttributes(attribute.String("oidc_session.idp.call", what))
	return ctx, sp
}

// Event names, emitted through Caddy's events app with the subject, the
// store and the provider (never a token) as data.
const (
	eventCreated   = "oidc_session.session_created"
	eventRefreshed = "oidc_session.session_refreshed"
	eventEnded     = "oidc_session.session_ended"
)

func (h *Handler) emit(name string, s *sessions.Session, reason string) {
	if h.events == nil || s == nil {
		return
	}
	data := map[string]any{"sub": s.Subject, "store": h.storeName, "provider": h.providerName(s)}
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
