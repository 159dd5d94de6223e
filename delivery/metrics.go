package delivery

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"relayq/queue"
)

// Metrics counts what delivery does, per recipient outcome: the totals by
// relay (its id: "default" for [relay]) and reply class, the latency from
// submission to the relay's 2xx, and the attempts a recipient took. relayq
// registers Collectors in its own registry; a nil *Metrics (the default of
// Options.Metrics) counts nothing.
//
// Labels: relay is the relay's id; class is the reply's "2xx", "4xx" or
// "5xx", or "local" for a failure with no reply (a timeout, a refused
// connection, a corrupt body); enhanced is the class and subject of the
// enhanced status code ("5.1" of 5.1.1), "" when the relay sent none. Both
// take a handful of values, so the series stay few.
type Metrics struct {
	delivered *prometheus.CounterVec
	deferred  *prometheus.CounterVec
	dead      *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	attempts  prometheus.Histogram
}

// latencyBuckets run from 10ms (a relay on loopback) to an hour (a message
// that waited out a relay's outage), in seconds.
var latencyBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600}

// NewMetrics returns delivery's counters, at zero.
func NewMetrics() *Metrics {
	return &Metrics{
		delivered: outcomeCounter("relayq_delivered_total", "Recipients the relay accepted (2xx)"),
		deferred:  outcomeCounter("relayq_deferred_total", "Recipient attempts that failed temporarily and will be retried"),
		dead:      outcomeCounter("relayq_dead_total", "Recipients dead-lettered (5xx, expired, corrupt body)"),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relayq_delivery_latency_seconds",
			Help:    "Time from submission (the queue's 250) to the relay's 2xx, per delivered recipient, by relay.",
			Buckets: latencyBuckets,
		}, []string{"relay"}),
		attempts: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relayq_delivery_attempts",
			Help:    "Attempts a recipient took until it was delivered or dead-lettered.",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32},
		}),
	}
}

// outcomeCounter is a counter of recipient outcomes by relay and reply.
func outcomeCounter(name, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: name,
		Help: help + ", by relay, reply class and enhanced status class.",
	}, []string{"relay", "class", "enhanced"})
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.delivered, m.deferred, m.dead, m.latency, m.attempts}
}

// outcome counts one recipient's recorded outcome; waiting ones (no
// attempt) are not counted.
func (m *Metrics) outcome(msg *queue.Message, relay string, o queue.Outcome, now time.Time) {
	if m == nil || o.Result == queue.Waiting {
		return
	}
	class, enhanced := replyClass(o.Reply)
	switch o.Result {
	case queue.Delivered:
		m.delivered.WithLabelValues(relay, class, enhanced).Inc()
		m.latency.WithLabelValues(relay).Observe(now.Sub(msg.Created).Seconds())
		m.attempts.Observe(float64(msg.Attempts + 1))
	case queue.Deferred:
		m.deferred.WithLabelValues(relay, class, enhanced).Inc()
	case queue.Failed:
		m.dead.WithLabelValues(relay, class, enhanced).Inc()
		m.attempts.Observe(float64(msg.Attempts + 1))
	}
}

// corrupt counts the recipients of a message dead-lettered unsent.
func (m *Metrics) corrupt(msg *queue.Message, relay string) {
	if m == nil {
		return
	}
	m.dead.WithLabelValues(relay, "local", "").Add(float64(len(msg.Pending())))
}

// replyClass is a reply's class label ("2xx", "4xx", "5xx"; "local" for
// none) and enhanced label ("5.1" of "5.1.1"; "" for none or one that is
// not of that form, so that a relay's odd text cannot make new series).
func replyClass(r *queue.Reply) (class, enhanced string) {
	if r == nil {
		return "local", ""
	}
	switch r.Code / 100 {
	case 2:
		class = "2xx"
	case 4:
		class = "4xx"
	case 5:
		class = "5xx"
	default:
		return "local", ""
	}
	cls, rest, ok := strings.Cut(r.Enhanced, ".")
	subject, _, ok2 := strings.Cut(rest, ".")
	if ok && ok2 && len(cls) == 1 && strings.Contains("245", cls) && len(subject) >= 1 && len(subject) <= 3 && allDigits(subject) {
		enhanced = cls + "." + subject
	}
	return class, enhanced
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// relayID is the id of the relay called name in r (the label is the id,
// short and stable; the name carries the url); name itself if none is.
func (r *Relay) relayID(name string) string {
	for _, e := range r.Endpoints {
		if e.Name == name {
			return e.ID
		}
	}
	return name
}

// relayID is relayID of the current relays.
func (d *Deliverer) relayID(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur.relayID(name)
}

// PoolCollector reports each current relay's pool and rate limit, read at
// scrape time from the transports (transport.Stats): connections open and
// idle, and the Sends that waited for the rate limit. A reload replaces the
// transports, so the wait counters start again from 0 (Prometheus' rate()
// takes that as a counter reset).
func (d *Deliverer) PoolCollector() prometheus.Collector { return poolCollector{d} }

type poolCollector struct{ d *Deliverer }

var (
	descConns = prometheus.NewDesc("relayq_relay_connections",
		"Connections to the relay, by state: open (in use, idle or being dialled) or idle (in the pool).", []string{"relay", "state"}, nil)
	descRateWaits = prometheus.NewDesc("relayq_relay_rate_limit_waits_total",
		"Messages that waited for room in the relay's rate limit (rate_limit per rate_delta).", []string{"relay"}, nil)
	descRateWaited = prometheus.NewDesc("relayq_relay_rate_limit_wait_seconds_total",
		"Time messages spent waiting for the relay's rate limit.", []string{"relay"}, nil)
)

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConns
	ch <- descRateWaits
	ch <- descRateWaited
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.d.mu.Lock()
	eps := c.d.cur.Endpoints
	c.d.mu.Unlock()
	for _, e := range eps {
		s := e.Transport.Stats()
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(s.Open), e.ID, "open")
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(s.Idle), e.ID, "idle")
		ch <- prometheus.MustNewConstMetric(descRateWaits, prometheus.CounterValue, float64(s.RateWaits), e.ID)
		ch <- prometheus.MustNewConstMetric(descRateWaited, prometheus.CounterValue, s.RateWaited.Seconds(), e.ID)
	}
}
