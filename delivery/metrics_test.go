package delivery

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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
// the relay and reply labels; waiting recipients count nothing; a nil
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
	for _, c := range []struct {
		got  float64
		want float64
		what string
	}{
		{value(t, m.delivered.WithLabelValues("main", "2xx", "2.0")), 1, "delivered main 2xx 2.0"},
		{value(t, m.deferred.WithLabelValues("main", "4xx", "4.3")), 1, "deferred main 4xx 4.3"},
		{value(t, m.deferred.WithLabelValues("main", "local", "")), 1, "deferred main local"},
		{value(t, m.dead.WithLabelValues("backup", "5xx", "5.1")), 1, "dead backup 5xx 5.1"},
		{count(m.deferred), 2, "deferred series"},
		{count(m.attempts), 1, "attempts histogram"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	var none *Metrics
	none.outcome(msg, "main", queue.Outcome{Result: queue.Delivered}, now) // no panic
	none.corrupt(msg, "main")
}

// value is a counter's value.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

// count is the number of series c has.
func count(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	return float64(len(ch))
}
