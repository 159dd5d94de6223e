package spool

import (
	"errors"
	"strings"
	"testing"
)

// TestMetrics: a message taken counts as accepted by the way it came in,
// and a refusal (unknown recipient, over the size, over max_connections)
// under its reason; every series exists from the start.
func TestMetrics(t *testing.T) {
	m := NewMetrics()
	if got := len(series(t, m)); got != 3+int(numReasons) {
		t.Fatalf("%d series at start, want %d (3 vias, %d reasons)", got, 3+int(numReasons), numReasons)
	}
	rw := Rewriting{Recipient: func(a string) ([]string, error) {
		if a == "nobody@vm" {
			return nil, errors.New("unknown")
		}
		return []string{a}, nil
	}}
	s := startServer(t, Options{MaxMessageSize: 100, Metrics: m, Rewriting: rw, MaxConnections: 1})
	c := newClient(t, dial(t, s, "tcp"))
	c.run([]step{
		{expect: "220"},
		{send: "EHLO client.test", expect: "250"},
		{send: "MAIL FROM:<a@example.org>", expect: "250"},
		{send: "RCPT TO:<nobody@vm>", expect: "550 5.1.1"},
		{send: "RCPT TO:<b@example.net>", expect: "250"},
		{send: "DATA", expect: "354"},
		{raw: "Subject: x\r\n\r\nbody\r\n.\r\n", expect: "250 2.0.0"},
		{send: "MAIL FROM:<a@example.org>", expect: "250"},
		{send: "RCPT TO:<b@example.net>", expect: "250"},
		{send: "DATA", expect: "354"},
		{raw: "Subject: x\r\n\r\n" + strings.Repeat("long body\r\n", 20) + ".\r\n", expect: "552 5.3.4"},
	})
	over := newClient(t, dial(t, s, "tcp")) // over max_connections
	over.run([]step{{expect: "421 4.7.0"}})
	got := series(t, m)
	for key, want := range map[string]float64{
		"relayq_accepted_total via=tcp":                 1,
		"relayq_accepted_total via=socket":              0,
		"relayq_intake_rejects_total reason=size":       1,
		"relayq_intake_rejects_total reason=queue_full": 0,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	var none *Metrics
	none.accept(viaSocket)
	if err := none.reject(reasonSize, replyNUL); err != replyNUL {
		t.Errorf("nil Metrics' reject returned %v, want the reply", err)
	}
}

// series reads m's snapshot as "name label=value" → value, named as
// relayq serves them.
func series(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	s := m.Snapshot()
	out := map[string]float64{}
	for _, c := range s.Accepted {
		out["relayq_accepted_total via="+c.Label] = float64(c.N)
	}
	for _, c := range s.Rejected {
		out["relayq_intake_rejects_total reason="+c.Label] = float64(c.N)
	}
	return out
}

// BenchmarkMetricsAccept is what counting costs each message taken in and
// each refusal.
func BenchmarkMetricsAccept(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	for b.Loop() {
		m.accept(viaSocket)
		_ = m.reject(reasonSize, nil)
	}
}
