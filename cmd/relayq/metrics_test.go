package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/delivery"
	"relayq/queue"
	"relayq/transport"
)

// TestHealthz: /healthz is 200 "ok" only while the queue answers and the
// delivery loop runs; otherwise 503 with the reason.
func TestHealthz(t *testing.T) {
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	d := &daemon{q: q, done: make(chan struct{}), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	expect := func(what string, code int, body string) {
		t.Helper()
		w := httptest.NewRecorder()
		(&health{d: d}).serve(w, httptest.NewRequest("GET", "/healthz", nil))
		if w.Code != code || !strings.Contains(w.Body.String(), body) {
			t.Errorf("%s: %d %q, want %d and %q", what, w.Code, w.Body.String(), code, body)
		}
	}
	expect("before delivery starts", http.StatusServiceUnavailable, "unhealthy: delivery not started")

	tr := transport.New(transport.Options{Address: "127.0.0.1:9"})
	defer tr.Close()
	dv := delivery.New(delivery.Options{Queue: q, Transport: tr, Logger: d.log})
	d.deliverer.Store(dv)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); dv.Run(ctx) }()
	for dv.LastTick().IsZero() {
		time.Sleep(time.Millisecond)
	}
	expect("running", http.StatusOK, "ok\n")

	d.stopping = true
	expect("stopping", http.StatusServiceUnavailable, "unhealthy: shutting down")
	d.stopping = false

	q.Close()
	expect("queue closed", http.StatusServiceUnavailable, "unhealthy: queue: ")

	cancel()
	<-ran
	close(d.done)
	expect("delivery returned", http.StatusServiceUnavailable, "unhealthy: delivery stopped")
}
