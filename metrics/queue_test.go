package metrics

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"relayq/queue"
)

// TestCollector: the queue-depth collector reports each state, the dead
// letters, the oldest ages and the file's size as the store has them at
// scrape time, and an error (no made-up zeros) once the queue is closed.
func TestCollector(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := queue.Open(path, queue.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(queueCollector{q: q, now: clk.Now})

	empty := gather(t, reg)
	for _, name := range []string{`relayq_queue_messages{state="queued"}`, `relayq_queue_messages{state="dead"}`, "relayq_queue_oldest_message_age_seconds"} {
		if v, ok := empty[name]; !ok || v != 0 {
			t.Errorf("empty queue: %s = %v (present %v), want 0", name, v, ok)
		}
	}

	put(t, q, "x\r\n", "a@x.org")    // deferred below
	put(t, q, "x\r\n", "gone@x.org") // dead below
	clk.Advance(time.Minute)
	put(t, q, "x\r\n", "b@x.org") // stays queued
	l := leaseOne(t, q)
	if _, err := q.Record(l, []queue.Outcome{{Address: "a@x.org", Result: queue.Deferred, Reply: &queue.Reply{Code: 451}, NextAttempt: clk.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	l = leaseOne(t, q)
	if _, err := q.Record(l, []queue.Outcome{{Address: "gone@x.org", Result: queue.Failed, Reply: &queue.Reply{Code: 550}}}); err != nil {
		t.Fatal(err)
	}
	active := leaseOne(t, q) // the third: active while leased
	t.Cleanup(func() { q.Release(active) })
	clk.Advance(time.Minute)

	got := gather(t, reg)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		`relayq_queue_messages{state="queued"}`:    0,
		`relayq_queue_messages{state="active"}`:    1,
		`relayq_queue_messages{state="deferred"}`:  1,
		`relayq_queue_messages{state="held"}`:      0,
		`relayq_queue_messages{state="uncertain"}`: 0,
		`relayq_queue_messages{state="damaged"}`:   0,
		`relayq_queue_messages{state="dead"}`:      1,
		"relayq_queue_oldest_message_age_seconds":  120,
		"relayq_queue_oldest_deferred_age_seconds": 120,
		"relayq_queue_file_size_bytes":             float64(fi.Size()),
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}

	closed, err := queue.Open(path+".closed", queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(queueCollector{q: closed, now: time.Now})
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "not open") {
		t.Errorf("scrape of a closed queue: %v, want an error saying it is not open", err)
	}
}

// gather scrapes reg into `name{label="value"}` → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=\"" + l.GetValue() + "\"}"
			}
			out[name] = m.GetGauge().GetValue()
		}
	}
	return out
}

// clock is a settable clock for the queue and the collector.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func put(t *testing.T, q *queue.Queue, body string, rcpts ...string) {
	t.Helper()
	env := queue.Envelope{From: "cron@example.org", Recipients: rcpts, Submitter: queue.Submitter{UID: 1000, Via: "socket"}}
	if _, err := q.Put(context.Background(), env, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

func leaseOne(t *testing.T, q *queue.Queue) *queue.Lease {
	t.Helper()
	ls, err := q.Lease(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 {
		t.Fatalf("leased %d messages, want 1", len(ls))
	}
	return ls[0]
}
