package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"relayq/spool"
)

var (
	descAccepted = prometheus.NewDesc("relayq_accepted_total",
		"Messages queued (answered 250, or imported from the maildrop), by the way they came in: socket, tcp or maildrop.",
		[]string{"via"}, nil)
	descRejected = prometheus.NewDesc("relayq_intake_rejects_total",
		"Connections, commands and messages intake refused, by reason (queue_full, memory, limits, connections, size, unknown_recipient…).",
		[]string{"reason"}, nil)
)

// intakeCollector serves spool.Metrics: every via and reason, from 0.
type intakeCollector struct{ m *spool.Metrics }

func (c intakeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAccepted
	ch <- descRejected
}

func (c intakeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Snapshot()
	for _, n := range s.Accepted {
		ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(n.N), n.Label)
	}
	for _, n := range s.Rejected {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(n.N), n.Label)
	}
}
