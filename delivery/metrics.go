package delivery

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"relayq/queue"
	"relayq/transport"
)

// Metrics counts what delivery does, per recipient outcome: the totals by
// relay (its id: "default" for [relay]) and reply class, the latency from
// submission to the relay's 2xx, and the attempts a recipient took. It
// keeps plain counters and histograms of its own: delivery does not know
// Prometheus; relayq's metrics package reads Snapshot at scrape time and
// serves relayq_delivered_total, relayq_deferred_total, relayq_dead_total,
// relayq_delivery_latency_seconds and relayq_delivery_attempts. A nil
// *Metrics (the default of Options.Metrics) counts nothing.
//
// Labels: relay is the relay's id; class is the reply's "2xx", "4xx" or
// "5xx", or "local" for a failure with no reply (a timeout, a refused
// connection, a corrupt body); enhanced is the class and subject of the
// enhanced status code ("5.1" of 5.1.1), "" when the relay sent none. Both
// take a handful of values, so the series stay few.
type Metrics struct {
	mu       sync.Mutex
	outcomes [numKinds]map[outcomeLabels]uint64
	latency  map[string]*histogram // by relay id
	attempts histogram
}

// outcomeKind is which counter an outcome goes to.
type outcomeKind int

const (
	kindDelivered outcomeKind = iota
	kindDeferred
	kindDead
	numKinds
)

type outcomeLabels struct{ relay, class, enhanced string }

// LatencyBuckets are the upper bounds of the latency histogram, in seconds:
// from 10ms (a relay on loopback) to an hour (a message that waited out a
// relay's outage).
var LatencyBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600}

// AttemptBuckets are the upper bounds of the attempts histogram.
var AttemptBuckets = []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32}

// NewMetrics returns delivery's counters, at zero.
func NewMetrics() *Metrics {
	m := &Metrics{latency: map[string]*histogram{}, attempts: newHistogram(AttemptBuckets)}
	for k := range m.outcomes {
		m.outcomes[k] = map[outcomeLabels]uint64{}
	}
	return m
}

// outcome counts one recipient's recorded outcome; waiting ones (no
// attempt) are not counted.
func (m *Metrics) outcome(msg *queue.Message, relay string, o queue.Outcome, now time.Time) {
	if m == nil || o.Result == queue.Waiting {
		return
	}
	class, enhanced := replyClass(o.Reply)
	l := outcomeLabels{relay, class, enhanced}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch o.Result {
	case queue.Delivered:
		m.outcomes[kindDelivered][l]++
		h := m.latency[relay]
		if h == nil {
			nh := newHistogram(LatencyBuckets)
			h = &nh
			m.latency[relay] = h
		}
		h.observe(now.Sub(msg.Created).Seconds())
		m.attempts.observe(float64(msg.Attempts + 1))
	case queue.Deferred:
		m.outcomes[kindDeferred][l]++
	case queue.Failed:
		m.outcomes[kindDead][l]++
		m.attempts.observe(float64(msg.Attempts + 1))
	}
}

// corrupt counts the recipients of a message dead-lettered unsent.
func (m *Metrics) corrupt(msg *queue.Message, relay string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.outcomes[kindDead][outcomeLabels{relay, "local", ""}] += uint64(len(msg.Pending()))
	m.mu.Unlock()
}

// OutcomeCount is one series of recipient outcomes: its labels and count.
type OutcomeCount struct {
	Relay, Class, Enhanced string
	N                      uint64
}

// Histogram is a histogram's state, as Prometheus has it: Cumulative[i]
// counts the observations ≤ UpperBounds[i]; Count and Sum are those of
// all of them.
type Histogram struct {
	UpperBounds []float64
	Cumulative  []uint64
	Count       uint64
	Sum         float64
}

// RelayLatency is the latency histogram of one relay.
type RelayLatency struct {
	Relay string
	Histogram
}

// Snapshot is what delivery has counted so far. The outcome lists hold
// the series seen at least once, sorted by their labels; Latency holds the
// relays that delivered at least once, sorted by id.
type Snapshot struct {
	Delivered, Deferred, Dead []OutcomeCount
	Latency                   []RelayLatency
	Attempts                  Histogram
}

// Snapshot copies the counters under the lock, so the figures agree with
// each other.
func (m *Metrics) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{
		Delivered: sortedOutcomes(m.outcomes[kindDelivered]),
		Deferred:  sortedOutcomes(m.outcomes[kindDeferred]),
		Dead:      sortedOutcomes(m.outcomes[kindDead]),
		Attempts:  m.attempts.snapshot(),
	}
	for relay, h := range m.latency {
		s.Latency = append(s.Latency, RelayLatency{Relay: relay, Histogram: h.snapshot()})
	}
	slices.SortFunc(s.Latency, func(a, b RelayLatency) int { return strings.Compare(a.Relay, b.Relay) })
	return s
}

func sortedOutcomes(counts map[outcomeLabels]uint64) []OutcomeCount {
	out := make([]OutcomeCount, 0, len(counts))
	for l, n := range counts {
		out = append(out, OutcomeCount{Relay: l.relay, Class: l.class, Enhanced: l.enhanced, N: n})
	}
	slices.SortFunc(out, func(a, b OutcomeCount) int {
		return cmp.Or(strings.Compare(a.Relay, b.Relay), strings.Compare(a.Class, b.Class), strings.Compare(a.Enhanced, b.Enhanced))
	})
	return out
}

// histogram counts observations into buckets (Prometheus' le: a value
// equal to a bound falls in that bound's bucket); the caller holds
// Metrics.mu.
type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; the last is above every bound
	sum    float64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i]++
	h.sum += v
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{UpperBounds: h.bounds, Cumulative: make([]uint64, len(h.bounds)), Sum: h.sum}
	for i, n := range h.counts {
		s.Count += n
		if i < len(h.bounds) {
			s.Cumulative[i] = s.Count
		}
	}
	return s
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
		enhanced = r.Enhanced[:len(cls)+1+len(subject)] // a slice of it, not a copy
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

// RelayStats is one current relay's pool and rate limit (transport.Stats),
// under the relay's id.
type RelayStats struct {
	ID string
	transport.Stats
}

// PoolStats reads each current relay's pool and rate limit from its
// transport, for relayq's metrics at scrape time. A reload replaces the
// transports, so the wait counters start again from 0 (Prometheus' rate()
// takes that as a counter reset).
func (d *Deliverer) PoolStats() []RelayStats {
	d.mu.Lock()
	eps := d.cur.Endpoints
	d.mu.Unlock()
	out := make([]RelayStats, len(eps))
	for i, e := range eps {
		out[i] = RelayStats{ID: e.ID, Stats: e.Transport.Stats()}
	}
	return out
}
