package metrics

import (
	"bufio"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"relayq/delivery"
	"relayq/queue"
	"relayq/spool"
	"relayq/transport"
)

// daemonRegistry is the registry as the daemon has it: intake, delivery,
// a queue and a deliverer with one relay.
func daemonRegistry(t *testing.T) (*Registry, *spool.Metrics, *delivery.Metrics) {
	t.Helper()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	tr := transport.New(transport.Options{Address: "127.0.0.1:9"})
	t.Cleanup(func() { tr.Close() })
	intake, dl := spool.NewMetrics(), delivery.NewMetrics()
	r := New("1.2.3", intake, dl)
	r.AddQueue(q, nil)
	r.AddDeliverer(delivery.New(delivery.Options{Queue: q, Transport: tr}))
	return r, intake, dl
}

// TestExposition pins what dashboards and alert rules rely on: each of
// relayq's metrics with its type and help text, and the series a fresh
// daemon serves (every via and reason at 0, the attempts histogram with
// its buckets, the queue's states, the relay's pool).
func TestExposition(t *testing.T) {
	r, _, _ := daemonRegistry(t)
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "relayq_") {
			if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []string
	series := 0
	sc := bufio.NewScanner(strings.NewReader(text.String()))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "# ") {
			got = append(got, sc.Text())
		} else {
			series++
		}
	}
	want := []string{
		"# HELP relayq_accepted_total Messages queued (answered 250, or imported from the maildrop), by the way they came in: socket, tcp or maildrop.",
		"# TYPE relayq_accepted_total counter",
		`# HELP relayq_build_info Always 1; the version label is relayq's.`,
		"# TYPE relayq_build_info gauge",
		"# HELP relayq_delivery_attempts Attempts a recipient took until it was delivered or dead-lettered.",
		"# TYPE relayq_delivery_attempts histogram",
		"# HELP relayq_intake_rejects_total Connections, commands and messages intake refused, by reason (queue_full, memory, limits, connections, size, unknown_recipient…).",
		"# TYPE relayq_intake_rejects_total counter",
		"# HELP relayq_queue_file_size_bytes Size of the queue database file (queue.db).",
		"# TYPE relayq_queue_file_size_bytes gauge",
		"# HELP relayq_queue_messages Messages in the queue by state (queued, deferred, held, active, uncertain, damaged), and dead letters (dead).",
		"# TYPE relayq_queue_messages gauge",
		"# HELP relayq_queue_oldest_deferred_age_seconds Time in the queue of the oldest message that was tried and is still not delivered, held ones aside; 0 when none.",
		"# TYPE relayq_queue_oldest_deferred_age_seconds gauge",
		"# HELP relayq_queue_oldest_message_age_seconds Age of the oldest message in the queue (since it was submitted); 0 when the queue is empty.",
		"# TYPE relayq_queue_oldest_message_age_seconds gauge",
		"# HELP relayq_relay_connections Connections to the relay, by state: open (in use, idle or being dialled) or idle (in the pool).",
		"# TYPE relayq_relay_connections gauge",
		"# HELP relayq_relay_rate_limit_wait_seconds_total Time messages spent waiting for the relay's rate limit.",
		"# TYPE relayq_relay_rate_limit_wait_seconds_total counter",
		"# HELP relayq_relay_rate_limit_waits_total Messages that waited for room in the relay's rate limit (rate_limit per rate_delta).",
		"# TYPE relayq_relay_rate_limit_waits_total counter",
	}
	if !slices.Equal(got, want) {
		t.Errorf("exposition:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// 3 vias + 1 build_info + 10 attempt buckets, +Inf, sum, count + 13
	// reasons + 1 file size + 7 states + 2 ages + 2 connections + 2 rate.
	if want := 3 + 1 + 13 + 13 + 1 + 7 + 2 + 2 + 2; series != want {
		t.Errorf("%d series, want %d:\n%s", series, want, text.String())
	}
}

// TestHistogram: delivery's cumulative buckets become Prometheus' le
// buckets as they are, with the count and sum.
func TestHistogram(t *testing.T) {
	h := delivery.Histogram{UpperBounds: []float64{1, 2, 4}, Cumulative: []uint64{2, 4, 5}, Count: 6, Sum: 18}
	var m dto.Metric
	if err := histogram(descAttempts, h).Write(&m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range m.GetHistogram().GetBucket() {
		got = append(got, fmt.Sprintf("le=%g:%d", b.GetUpperBound(), b.GetCumulativeCount()))
	}
	if want := []string{"le=1:2", "le=2:4", "le=4:5"}; !slices.Equal(got, want) || m.GetHistogram().GetSampleCount() != 6 || m.GetHistogram().GetSampleSum() != 18 {
		t.Errorf("buckets %v count %d sum %v, want %v, 6, 18", got, m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(), want)
	}
}
