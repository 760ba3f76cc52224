package oidcsession

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// cacheControlWriter gives a response of an authenticated request a
// default Cache-Control when the handlers after us set none: a page made
// for a logged-in user must not be kept by shared caches, nor restored by
// the browser's back button after logout. An upstream that chooses its own
// caching keeps its choice.
type cacheControlWriter struct {
	caddyhttp.ResponseWriterWrapper
	value       string
	wroteHeader bool
}

func (w *cacheControlWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 { // 1xx responses come before the real one
		w.wroteHeader = true
		if _, set := w.Header()["Cache-Control"]; !set {
			w.Header().Set("Cache-Control", w.value)
		}
	}
	w.ResponseWriterWrapper.WriteHeader(code)
}

func (w *cacheControlWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.Write(b)
}

func (w *cacheControlWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}
