package spool

import "sync/atomic"

// Metrics counts what intake takes in and what it turns away, in plain
// atomic counters: intake does not know Prometheus (relayq sendmail links
// this package, and client_golang's init costs every call over a
// millisecond). relayq's metrics package reads Snapshot at scrape time and
// serves it as relayq_accepted_total{via} and
// relayq_intake_rejects_total{reason}. A nil *Metrics (the default of
// Options.Metrics) counts nothing. Every label value is known in advance,
// so counting is an array index, not a label lookup.
type Metrics struct {
	accepted [numVias]atomic.Uint64
	rejected [numReasons]atomic.Uint64
}

// viaIndex is the index in Metrics.accepted of each way in.
var viaIndex = map[string]int{viaSocket: 0, viaTCP: 1, viaMaildrop: 2}

// viaNames are the values of the via label, in viaIndex's order.
var viaNames = [...]string{viaSocket, viaTCP, viaMaildrop}

const numVias = len(viaNames)

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

// NewMetrics returns intake's counters, every one at 0.
func NewMetrics() *Metrics { return &Metrics{} }

// Count is one counter of a Snapshot: its label value and how many so far.
type Count struct {
	Label string
	N     uint64
}

// Snapshot is what intake has counted so far. Each list holds every label
// value, in a fixed order, those at 0 included.
type Snapshot struct {
	// Accepted counts messages queued (answered 250, or imported from the
	// maildrop) by the way they came in: socket, tcp or maildrop.
	Accepted []Count
	// Rejected counts connections, commands and messages refused, by
	// reason: queue_full, memory, limits, connections, size,
	// line_too_long, unknown_recipient, bad_address, bad_dsn, nul,
	// incomplete, storage, shutdown.
	Rejected []Count
}

// Snapshot reads the counters; each is read atomically, the set is not.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{Accepted: make([]Count, numVias), Rejected: make([]Count, numReasons)}
	for i, via := range viaNames {
		s.Accepted[i] = Count{Label: via, N: m.accepted[i].Load()}
	}
	for r, name := range reasonNames {
		s.Rejected[r] = Count{Label: name, N: m.rejected[r].Load()}
	}
	return s
}

func (m *Metrics) accept(via string) {
	if m != nil {
		m.accepted[viaIndex[via]].Add(1)
	}
}

// reject counts a refusal and returns err, so that a return site reads
// `return s.srv.opts.Metrics.reject(reasonX, replyX)`.
func (m *Metrics) reject(r reason, err error) error {
	if m != nil {
		m.rejected[r].Add(1)
	}
	return err
}
