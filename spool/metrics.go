package spool

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what intake takes in and what it turns away. relayq
// registers Collectors in its own registry; a nil *Metrics (the default
// of Options.Metrics) counts nothing. Every label value is known in
// advance, so each series is made (at 0) by NewMetrics and counting is an
// array index, not a label lookup.
type Metrics struct {
	accepted    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	acceptedVia map[string]prometheus.Counter // by via (viaSocket, viaTCP, viaMaildrop)
	rejectedBy  [numReasons]prometheus.Counter
}

// reason is why intake refused a connection, a command or a message.
type reason int

const (
	reasonQueueFull        reason = iota // 452 4.3.1: below [queue] min_free or max_size
	reasonMemory                         // 452 4.3.1 / 552 5.3.4: [submission] max_memory
	reasonLimits                         // 452 4.7.0 / 552 5.3.4: a [limits] rule
	reasonConnections                    // 421 4.7.0: max_connections(_per_user), descriptors
	reasonSize                           // 552 5.3.4: max_message_size
	reasonLineTooLong                    // 552 5.3.4
	reasonUnknownRecipient               // 550 5.1.1: [aliases] maps it to nothing
	reasonBadAddress                     // 501 5.1.3 / 5.1.7, 553 5.1.3
	reasonBadDSN                         // 501 5.5.4
	reasonNUL                            // 554 5.6.0
	reasonIncomplete                     // 451 4.4.2: the data never came in full
	reasonStorage                        // 451 4.3.0: the queue failed
	reasonShutdown                       // 421 4.3.2
	numReasons
)

// reasonNames are the values of the reason label.
var reasonNames = [numReasons]string{
	reasonQueueFull:        "queue_full",
	reasonMemory:           "memory",
	reasonLimits:           "limits",
	reasonConnections:      "connections",
	reasonSize:             "size",
	reasonLineTooLong:      "line_too_long",
	reasonUnknownRecipient: "unknown_recipient",
	reasonBadAddress:       "bad_address",
	reasonBadDSN:           "bad_dsn",
	reasonNUL:              "nul",
	reasonIncomplete:       "incomplete",
	reasonStorage:          "storage",
	reasonShutdown:         "shutdown",
}

// NewMetrics returns intake's counters, every series at 0.
func NewMetrics() *Metrics {
	m := &Metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_accepted_total",
			Help: "Messages queued (answered 250, or imported from the maildrop), by the way they came in: socket, tcp or maildrop.",
		}, []string{"via"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_intake_rejects_total",
			Help: "Connections, commands and messages intake refused, by reason (queue_full, memory, limits, connections, size, unknown_recipient…).",
		}, []string{"reason"}),
		acceptedVia: map[string]prometheus.Counter{},
	}
	for _, via := range []string{viaSocket, viaTCP, viaMaildrop} {
		m.acceptedVia[via] = m.accepted.WithLabelValues(via)
	}
	for r, name := range reasonNames {
		m.rejectedBy[r] = m.rejected.WithLabelValues(name)
	}
	return m
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.accepted, m.rejected}
}

func (m *Metrics) accept(via string) {
	if m != nil {
		m.acceptedVia[via].Inc()
	}
}

// reject counts a refusal and returns err, so that a return site reads
// `return s.srv.opts.Metrics.reject(reasonX, replyX)`.
func (m *Metrics) reject(r reason, err error) error {
	if m != nil {
		m.rejectedBy[r].Inc()
	}
	return err
}
