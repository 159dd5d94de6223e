package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"relayq/delivery"
)

var outcomeLabels = []string{"relay", "class", "enhanced"}

var (
	descDelivered = prometheus.NewDesc("relayq_delivered_total",
		"Recipients the relay accepted (2xx), by relay, reply class and enhanced status class.", outcomeLabels, nil)
	descDeferred = prometheus.NewDesc("relayq_deferred_total",
		"Recipient attempts that failed temporarily and will be retried, by relay, reply class and enhanced status class.", outcomeLabels, nil)
	descDead = prometheus.NewDesc("relayq_dead_total",
		"Recipients dead-lettered (5xx, expired, corrupt body), by relay, reply class and enhanced status class.", outcomeLabels, nil)
	descLatency = prometheus.NewDesc("relayq_delivery_latency_seconds",
		"Time from submission (the queue's 250) to the relay's 2xx, per delivered recipient, by relay.", []string{"relay"}, nil)
	descAttempts = prometheus.NewDesc("relayq_delivery_attempts",
		"Attempts a recipient took until it was delivered or dead-lettered.", nil, nil)

	descConns = prometheus.NewDesc("relayq_relay_connections",
		"Connections to the relay, by state: open (in use, idle or being dialled) or idle (in the pool).", []string{"relay", "state"}, nil)
	descRateWaits = prometheus.NewDesc("relayq_relay_rate_limit_waits_total",
		"Messages that waited for room in the relay's rate limit (rate_limit per rate_delta).", []string{"relay"}, nil)
	descRateWaited = prometheus.NewDesc("relayq_relay_rate_limit_wait_seconds_total",
		"Time messages spent waiting for the relay's rate limit.", []string{"relay"}, nil)
)

// deliveryCollector serves delivery.Metrics. As with a CounterVec, an
// outcome series appears once it has counted something and a relay's
// latency once it has delivered; the attempts histogram is always there.
type deliveryCollector struct{ m *delivery.Metrics }

func (c deliveryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDelivered, descDeferred, descDead, descLatency, descAttempts} {
		ch <- d
	}
}

func (c deliveryCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Snapshot()
	for _, o := range []struct {
		desc   *prometheus.Desc
		counts []delivery.OutcomeCount
	}{{descDelivered, s.Delivered}, {descDeferred, s.Deferred}, {descDead, s.Dead}} {
		for _, n := range o.counts {
			ch <- prometheus.MustNewConstMetric(o.desc, prometheus.CounterValue, float64(n.N), n.Relay, n.Class, n.Enhanced)
		}
	}
	for _, l := range s.Latency {
		ch <- histogram(descLatency, l.Histogram, l.Relay)
	}
	ch <- histogram(descAttempts, s.Attempts)
}

// histogram is h as a Prometheus histogram.
func histogram(desc *prometheus.Desc, h delivery.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.UpperBounds))
	for i, le := range h.UpperBounds {
		buckets[le] = h.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(desc, h.Count, h.Sum, buckets, labels...)
}

// poolCollector serves each current relay's pool and rate limit
// (Deliverer.PoolStats).
type poolCollector struct{ d *delivery.Deliverer }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConns
	ch <- descRateWaits
	ch <- descRateWaited
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.d.PoolStats() {
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(r.Open), r.ID, "open")
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(r.Idle), r.ID, "idle")
		ch <- prometheus.MustNewConstMetric(descRateWaits, prometheus.CounterValue, float64(r.RateWaits), r.ID)
		ch <- prometheus.MustNewConstMetric(descRateWaited, prometheus.CounterValue, r.RateWaited.Seconds(), r.ID)
	}
}
