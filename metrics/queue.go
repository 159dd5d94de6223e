package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"relayq/queue"
)

// The queue's metrics are read at scrape time: queueCollector summarizes
// the store as `relayq status` does, from the counters every change keeps
// in its own transaction (queue/counters.go), so a scrape costs the same
// at any depth and nothing on the paths that change the store pays for it.

var (
	descMessages = prometheus.NewDesc("relayq_queue_messages",
		"Messages in the queue by state (queued, deferred, held, active, uncertain, damaged), and dead letters (dead).",
		[]string{"state"}, nil)
	descOldest = prometheus.NewDesc("relayq_queue_oldest_message_age_seconds",
		"Age of the oldest message in the queue (since it was submitted); 0 when the queue is empty.", nil, nil)
	descOldestDeferred = prometheus.NewDesc("relayq_queue_oldest_deferred_age_seconds",
		"Time in the queue of the oldest message that was tried and is still not delivered, held ones aside; 0 when none.", nil, nil)
	descFileSize = prometheus.NewDesc("relayq_queue_file_size_bytes",
		"Size of the queue database file (queue.db).", nil, nil)
)

// queueCollector reports the queue's depth by state, the ages of its
// oldest messages and the size of its file. A scrape of a closed queue
// reports an error for these metrics, not made-up zeros.
type queueCollector struct {
	q   *queue.Queue
	now func() time.Time
}

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descOldest, descOldestDeferred, descFileSize} {
		ch <- d
	}
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	s, err := c.q.Summarize(now)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descMessages, err)
		return
	}
	for _, st := range []struct {
		state string
		n     int
	}{
		{string(queue.StateQueued), s.Queued}, {string(queue.StateDeferred), s.Deferred}, {string(queue.StateHeld), s.Held},
		{string(queue.StateActive), s.Active}, {string(queue.StateUncertain), s.Uncertain}, {string(queue.StateDamaged), s.Damaged},
		{"dead", s.Dead},
	} {
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.GaugeValue, float64(st.n), st.state)
	}
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age(now, s.Oldest))
	ch <- prometheus.MustNewConstMetric(descOldestDeferred, prometheus.GaugeValue, age(now, s.OldestDeferred))
	ch <- prometheus.MustNewConstMetric(descFileSize, prometheus.GaugeValue, float64(s.FileSize))
}

// age is now - t in seconds; 0 for the zero time.
func age(now, t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return max(now.Sub(t).Seconds(), 0)
}
