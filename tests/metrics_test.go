package tests

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"relayq/transport/smtptest"
)

// TestMetricsAfterKnownSequence: SMTP on the unix socket → relayq →
// smtptest relay; then curl-like GETs of [metrics] listen (127.0.0.1:0,
// the port read from the log). Five messages are accepted and one refused
// (over max_message_size); of the five, three are delivered at once, one
// after a 451 4.3.0 (deferred once), one dead on 550 5.1.1. /metrics then
// counts exactly that, the queue collector shows the one dead letter and
// an empty queue, and /healthz answers 200 while relayq runs.
func TestMetricsAfterKnownSequence(t *testing.T) {
	later, gone := "later@example.net", "gone@example.net"
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Rcpt: map[string][]smtptest.Step{
		later: {smtptest.Reply(451, "4.3.0 Not now")},
		gone:  {smtptest.Reply(550, "5.1.1 No such user")},
	}}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("metrics", "listen", `"127.0.0.1:0"`)
		s.set("submission", "max_message_size", `"16KiB"`)
	})
	base := "http://" + metricsAddr(t, d)

	from := "metrics@example.org"
	for i, to := range []string{"a@example.net", "b@example.net", "c@example.net", later, gone} {
		d.submit(t, from, []string{to}, newMessage(i, from, []string{to}, 3))
	}
	big := newMessage(9, from, []string{"a@example.net"}, 2000)
	if _, err := submitSMTP("unix", d.submitSocket(), from, []string{"a@example.net"}, big); err == nil || !strings.Contains(err.Error(), "552") {
		t.Fatalf("a %d-byte message: %v, want 552", len(big), err)
	}
	relay.WaitMessages(t, 4, 20*time.Second)
	d.waitQueueEmpty(t, 10*time.Second)

	// The counters move just after the store records, so wait for the
	// last of them.
	var m samples
	waitFor(t, 10*time.Second, "every outcome counted", func() bool {
		m = scrape(t, base+"/metrics")
		return m["relayq_delivery_attempts_count"] == 5
	})
	for _, c := range []struct {
		series string
		want   float64
	}{
		{`relayq_accepted_total{via="socket"}`, 5},
		{`relayq_accepted_total{via="maildrop"}`, 0},
		{`relayq_intake_rejects_total{reason="size"}`, 1},
		{`relayq_intake_rejects_total{reason="queue_full"}`, 0},
		{`relayq_delivered_total{class="2xx",enhanced="2.0",relay="default"}`, 4},
		{`relayq_deferred_total{class="4xx",enhanced="4.3",relay="default"}`, 1},
		{`relayq_dead_total{class="5xx",enhanced="5.1",relay="default"}`, 1},
		{`relayq_delivery_latency_seconds_count{relay="default"}`, 4},
		{`relayq_delivery_attempts_count`, 5},
		{`relayq_delivery_attempts_sum`, 6}, // 1+1+1+2 delivered, 1 dead
		{`relayq_queue_messages{state="queued"}`, 0},
		{`relayq_queue_messages{state="deferred"}`, 0},
		{`relayq_queue_messages{state="dead"}`, 1},
		{`relayq_queue_oldest_message_age_seconds`, 0},
		{`relayq_relay_rate_limit_waits_total{relay="default"}`, 0},
	} {
		got, ok := m[c.series]
		if !ok || got != c.want {
			t.Errorf("%s = %v (present: %v), want %v", c.series, got, ok, c.want)
		}
	}
	if m.label("relayq_build_info", "version") == `""` {
		t.Errorf("relayq_build_info has no version")
	}
	for _, present := range []string{`relayq_relay_connections{relay="default",state="open"}`, `relayq_relay_connections{relay="default",state="idle"}`, "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := m[present]; !ok {
			t.Errorf("%s missing from /metrics", present)
		}
	}
	if m["relayq_queue_file_size_bytes"] <= 0 {
		t.Errorf("relayq_queue_file_size_bytes = %v, want the size of queue.db", m["relayq_queue_file_size_bytes"])
	}

	code, body := get(t, base+"/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
}

var metricsListening = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// metricsAddr is the address relayq logged for its metrics listener.
func metricsAddr(t *testing.T, d *daemon) string {
	t.Helper()
	var addr string
	waitFor(t, 10*time.Second, "the metrics listener in the log", func() bool {
		m := metricsListening.FindStringSubmatch(d.log.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr
}

// samples are scraped values by `name{label="value",…}` (labels sorted),
// histograms as name_count and name_sum.
type samples map[string]float64

// label is the value of label in the first series of name, quoted.
func (s samples) label(name, label string) string {
	re := regexp.MustCompile(`^` + name + `\{.*` + label + `=("[^"]*")`)
	for k := range s {
		if m := re.FindStringSubmatch(k); m != nil {
			return m[1]
		}
	}
	return `""`
}

// scrape GETs url and parses the Prometheus text format.
func scrape(t *testing.T, url string) samples {
	t.Helper()
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := samples{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name + labelString(m)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[key] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labelString(m)] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labelString(m)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func labelString(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	var b bytes.Buffer
	for i, l := range m.GetLabel() { // sorted by name in the exposition
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
	}
	return "{" + b.String() + "}"
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// TestMetricsListenerHoldsFewConnections: the metrics listener is open to
// every local user. 300 connections that send nothing cost the daemon at
// most its cap of descriptors (the rest are answered 503 and closed at
// once); once they are gone, a scrape works.
func TestMetricsListenerHoldsFewConnections(t *testing.T) {
	d := startDaemon(t, nil, func(s settings) { s.set("metrics", "listen", `"127.0.0.1:0"`) })
	addr := metricsAddr(t, d)
	pid := d.running().cmd.Process.Pid
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	var conns []net.Conn
	for range 300 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond) // the refused ones answered and closed
	if held := fds() - before; held > 40 {
		t.Errorf("300 idle connections to the metrics listener hold %d of the daemon's descriptors", held)
	}
	busy := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		b, _ := io.ReadAll(c)
		if strings.HasPrefix(string(b), "HTTP/1.1 503") {
			busy++
		}
		c.Close()
	}
	if busy < 250 {
		t.Errorf("%d of 300 idle connections were answered 503", busy)
	}
	// Until the daemon has seen them close, a new connection may still be
	// over the cap: its 503 and close can come before the request is
	// written, so a failed request is retried.
	waitFor(t, 10*time.Second, "a scrape after the connections closed", func() bool {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
