package delivery

import (
	"slices"
	"testing"
	"time"

	"relayq/queue"
)

func TestReplyClass(t *testing.T) {
	for _, c := range []struct {
		reply           *queue.Reply
		class, enhanced string
	}{
		{nil, "local", ""},
		{&queue.Reply{Code: 250, Enhanced: "2.0.0"}, "2xx", "2.0"},
		{&queue.Reply{Code: 250}, "2xx", ""},
		{&queue.Reply{Code: 451, Enhanced: "4.4.2"}, "4xx", "4.4"},
		{&queue.Reply{Code: 550, Enhanced: "5.1.1"}, "5xx", "5.1"},
		{&queue.Reply{Code: 554, Enhanced: "5.123.1"}, "5xx", "5.123"},
		{&queue.Reply{Code: 550, Enhanced: "5.1234.1"}, "5xx", ""},
		{&queue.Reply{Code: 550, Enhanced: "x.1.1"}, "5xx", ""},
		{&queue.Reply{Code: 550, Enhanced: "5.a.1"}, "5xx", ""},
		{&queue.Reply{Code: 550, Enhanced: "5"}, "5xx", ""},
		{&queue.Reply{Code: 999}, "local", ""},
		{&queue.Reply{Code: 0, Enhanced: "4.4.1"}, "local", ""},
	} {
		class, enhanced := replyClass(c.reply)
		if class != c.class || enhanced != c.enhanced {
			t.Errorf("replyClass(%+v) = %q, %q; want %q, %q", c.reply, class, enhanced, c.class, c.enhanced)
		}
	}
}

// TestMetricsOutcome: each recorded outcome lands in its counter with
// the relay and reply labels; waiting recipients count nothing; delivered
// ones add their latency and attempts, dead ones their attempts; a nil
// Metrics is a no-op.
func TestMetricsOutcome(t *testing.T) {
	m := NewMetrics()
	now := time.Now()
	msg := &queue.Message{Created: now.Add(-3 * time.Second), Attempts: 2}
	m.outcome(msg, "main", queue.Outcome{Result: queue.Delivered, Reply: &queue.Reply{Code: 250, Enhanced: "2.0.0"}}, now)
	m.outcome(msg, "main", queue.Outcome{Result: queue.Deferred, Reply: &queue.Reply{Code: 451, Enhanced: "4.3.0"}}, now)
	m.outcome(msg, "main", queue.Outcome{Result: queue.Deferred}, now)
	m.outcome(msg, "backup", queue.Outcome{Result: queue.Failed, Reply: &queue.Reply{Code: 550, Enhanced: "5.1.1"}}, now)
	m.outcome(msg, "main", queue.Outcome{Result: queue.Waiting}, now)
	m.corrupt(&queue.Message{Recipients: []queue.Recipient{{Address: "a@x", Status: queue.StatusQueued}, {Address: "b@x", Status: queue.StatusDeferred}, {Address: "c@x", Status: queue.StatusDelivered}}}, "main")
	s := m.Snapshot()
	for _, c := range []struct {
		got, want []OutcomeCount
		what      string
	}{
		{s.Delivered, []OutcomeCount{{"main", "2xx", "2.0", 1}}, "delivered"},
		{s.Deferred, []OutcomeCount{{"main", "4xx", "4.3", 1}, {"main", "local", "", 1}}, "deferred"},
		{s.Dead, []OutcomeCount{{"backup", "5xx", "5.1", 1}, {"main", "local", "", 2}}, "dead"},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if len(s.Latency) != 1 || s.Latency[0].Relay != "main" || s.Latency[0].Count != 1 || s.Latency[0].Sum != 3 {
		t.Errorf("latency = %+v, want main's one observation of 3s", s.Latency)
	}
	if s.Attempts.Count != 2 || s.Attempts.Sum != 6 {
		t.Errorf("attempts = %+v, want 2 observations of 3", s.Attempts)
	}
	var none *Metrics
	none.outcome(msg, "main", queue.Outcome{Result: queue.Delivered}, now) // no panic
	none.corrupt(msg, "main")
}

// TestHistogramBuckets: a value equal to a bound counts in that bound's
// bucket (Prometheus' le), the buckets are cumulative, and a value above
// every bound counts only in Count and Sum.
func TestHistogramBuckets(t *testing.T) {
	h := newHistogram([]float64{1, 2, 4})
	for _, v := range []float64{0.5, 1, 1.5, 2, 4, 9} {
		h.observe(v)
	}
	s := h.snapshot()
	if want := []uint64{2, 4, 5}; !slices.Equal(s.Cumulative, want) || s.Count != 6 || s.Sum != 18 {
		t.Errorf("snapshot = %+v, want cumulative %v, count 6, sum 18", s, want)
	}
	empty := newHistogram(AttemptBuckets)
	if e := empty.snapshot(); e.Count != 0 || len(e.Cumulative) != len(AttemptBuckets) {
		t.Errorf("empty histogram = %+v", e)
	}
}

// BenchmarkMetricsOutcome is what counting costs each recorded recipient:
// one delivered (a counter, the latency and attempts histograms) and one
// deferred.
func BenchmarkMetricsOutcome(b *testing.B) {
	m := NewMetrics()
	now := time.Now()
	msg := &queue.Message{Created: now.Add(-3 * time.Second), Attempts: 1}
	ok := queue.Outcome{Result: queue.Delivered, Reply: &queue.Reply{Code: 250, Enhanced: "2.0.0"}}
	later := queue.Outcome{Result: queue.Deferred, Reply: &queue.Reply{Code: 451, Enhanced: "4.3.0"}}
	b.ReportAllocs()
	for b.Loop() {
		m.outcome(msg, "default", ok, now)
		m.outcome(msg, "default", later, now)
	}
}
