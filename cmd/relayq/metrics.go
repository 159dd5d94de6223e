package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"relayq/conncap"
	"relayq/delivery"
	"relayq/metrics"
	"relayq/spool"
)

// [metrics] listen: an HTTP listener with /metrics (Prometheus) and
// /healthz. The packages that change the figures count them (spool,
// delivery, transport through delivery, queue); package metrics, the only
// one that knows Prometheus, serves them; this file wires the two.

// metricsTimeout bounds a scrape's request and reply.
const metricsTimeout = 30 * time.Second

// healthWait is how long /healthz waits for the queue's committer to
// answer a read before it calls the queue stuck.
const healthWait = 2 * time.Second

// promMetrics is the daemon's registry and the counters it hands to the
// packages; nil when [metrics] listen is empty.
type promMetrics struct {
	reg      *metrics.Registry
	spool    *spool.Metrics
	delivery *delivery.Metrics
	srv      *http.Server
	addr     net.Addr
}

// The metrics listener's caps: scrapers are few and make a request at a
// time.
const (
	metricsMaxConns          = 32
	metricsMaxConnsPerCaller = 8
	metricsIdleTimeout       = 30 * time.Second
	metricsBusy              = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 21\r\n\r\ntoo many connections\n"
)

// newMetrics makes the packages' counters and the registry that serves
// them.
func newMetrics() *promMetrics {
	m := &promMetrics{spool: spool.NewMetrics(), delivery: delivery.NewMetrics()}
	m.reg = metrics.New(versionString(), m.spool, m.delivery)
	return m
}

func (m *promMetrics) spoolMetrics() *spool.Metrics {
	if m == nil {
		return nil
	}
	return m.spool
}

func (m *promMetrics) deliveryMetrics() *delivery.Metrics {
	if m == nil {
		return nil
	}
	return m.delivery
}

// startMetrics registers the queue's collector and listens on [metrics]
// listen (a step of startDaemon); the pool collector is added when
// delivery starts (addDeliverer).
func (d *daemon) startMetrics() (func(), error) {
	m := d.metrics
	if m == nil {
		return func() {}, nil
	}
	m.reg.AddQueue(d.q, nil)
	ln, err := net.Listen("tcp", d.cfg.Metrics.Listen)
	if err != nil {
		return nil, &startErr{exitOSErr, fmt.Errorf("metrics: %w", err)}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.reg.Handler(slog.NewLogLogger(d.log.Handler(), slog.LevelWarn), metricsTimeout))
	h := &health{d: d}
	mux.HandleFunc("/healthz", h.serve)
	// Any local user may connect: connections are capped (conncap) and
	// an idle keep-alive connection is closed, so that none can hold the
	// daemon's descriptors.
	ln = conncap.New(ln, metricsMaxConns, metricsMaxConnsPerCaller, metricsBusy)
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: metricsTimeout + 5*time.Second,
		IdleTimeout: metricsIdleTimeout, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	m.addr = ln.Addr()
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics: serve", "err", err)
		}
	}()
	d.log.Info("metrics listening", "addr", m.addr.String())
	return m.close, nil
}

// addDeliverer registers the relays' pools and rate limits, read from
// the deliverer at scrape time.
func (m *promMetrics) addDeliverer(dv *delivery.Deliverer) {
	if m != nil {
		m.reg.AddDeliverer(dv)
	}
}

// close stops the listener, letting a scrape under way finish.
func (m *promMetrics) close() {
	if m == nil || m.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
}

// health answers /healthz: 200 "ok" while the queue is open and answers,
// and the delivery loop goes round; else 503 and the reason on one line.
type health struct {
	d  *daemon
	mu sync.Mutex // one check at a time: liveness keeps the read in flight
	l  *liveness  // systemd.go; made once delivery has started
}

func (h *health) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := h.check(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (h *health) check() error {
	d := h.d
	d.reloadMu.Lock()
	stopping := d.stopping
	d.reloadMu.Unlock()
	if stopping {
		return errors.New("shutting down")
	}
	dv := d.deliverer.Load()
	if dv == nil {
		return errors.New("delivery not started")
	}
	select {
	case <-d.done:
		return errors.New("delivery stopped")
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.l == nil {
		h.l = &liveness{lastTick: dv.LastTick, bound: dv.TickBound(), ping: d.q.Ping, wait: healthWait, now: time.Now}
	}
	return h.l.check()
}
