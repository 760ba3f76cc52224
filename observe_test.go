package oidcsession

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/oidc-session/oidc_session/internal/lifecycle"
	"github.com/oidc-session/oidc_session/sessions"
	"github.com/oidc-session/oidc_session/sessions/storetest"
)

// TestStoreSpans: with a span in the request context (as Caddy's tracing
// handler puts there), store calls become child spans of it.
func TestStoreSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("caddy").Start(context.Background(), "request")

	store := &sessions.CookieStore{}
	_ = store.Bind(storetest.NewEnv(t))
	h := &Handler{storeName: "cookie"}
	keeper := func() *lifecycle.Keeper {
		return lifecycle.New(lifecycle.Config{Store: store, Hooks: lifecycle.Hooks{Store: h.storeCall}})
	}
	c, err := keeper().Start(ctx, "", storetest.FullSession())
	if err != nil {
		t.Fatal(err)
	}
	k := keeper() // a cached session is not read from the store: a new cache
	s, err := k.Peek(ctx, c.Value)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = k.End(ctx, c.Value, s, "test")
	parent.End()

	want := map[string]bool{"oidc_session.store.save": false, "oidc_session.store.load": false, "oidc_session.store.delete": false}
	for _, s := range rec.Ended() {
		if _, ok := want[s.Name()]; ok {
			want[s.Name()] = true
			if s.Parent().SpanID() != parent.SpanContext().SpanID() {
				t.Errorf("%s is not a child of the request span", s.Name())
			}
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("no span %s", name)
		}
	}
}

// TestStoreSpansUnsampled: without a recording span (tracing off, or the
// request not sampled) store calls make no span and leave the context as
// it is.
func TestStoreSpansUnsampled(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.NeverSample()))
	sampledOut, parent := tp.Tracer("caddy").Start(context.Background(), "request")
	h := &Handler{storeName: "memory"}
	for name, ctx := range map[string]context.Context{"no tracing": context.Background(), "not sampled": sampledOut} {
		got, done := h.storeCall(ctx, lifecycle.OpExists)
		done(nil)
		if got != ctx {
			t.Errorf("%s: the store call's context is a new one", name)
		}
	}
	parent.End()
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded with nothing sampled", n)
	}
}
