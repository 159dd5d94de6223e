package tests

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// dataClock records when a smtptest relay received each DATA command: one
// per delivery attempt. Its logf is the relay's Options.Logf.
type dataClock struct {
	mu    sync.Mutex
	times []time.Time
}

func (c *dataClock) logf(format string, args ...any) {
	if strings.HasSuffix(fmt.Sprintf(format, args...), " C: DATA") {
		c.mu.Lock()
		c.times = append(c.times, time.Now())
		c.mu.Unlock()
	}
}

func (c *dataClock) gaps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(c.times); i++ {
		out = append(out, c.times[i].Sub(c.times[i-1]))
	}
	return out
}

// TestRetryAfter451: SMTP on the unix socket → relayq → smtptest relay that
// answers DATA with 451 twice, then 250. Delivered on the third attempt,
// after two "deferred" log lines, with a longer wait before the third try
// than before the second.
func TestRetryAfter451(t *testing.T) {
	var clock dataClock
	relay := smtptest.NewServer(t, smtptest.Options{
		Script: smtptest.Script{Data: smtptest.Times(2, smtptest.Reply(451, "4.3.0 Try again later"))},
		Logf:   clock.logf,
	})
	d := startDaemon(t, relay, func(s settings) {
		s.set("retry", "initial_interval", `"200ms"`)
		// ×3 rather than ×2 keeps the two waits apart even on a loaded
		// CI machine, where a wait can only grow.
		s.set("retry", "multiplier", "3.0")
		s.set("retry", "max_interval", `"5s"`)
	})
	from, to := "retry@example.org", []string{"rcpt@example.net"}
	body := newMessage(1, from, to, 10)
	id := d.submit(t, from, to, body)

	got := relay.WaitMessages(t, 1, 20*time.Second)
	if !sameMessage(got[0].Body, body) {
		t.Errorf("body differs:\n got %q\nwant %q", got[0].Body, body)
	}
	if n := relay.DataAttempts(); n != 3 {
		t.Errorf("relay saw %d DATA commands, want 3", n)
	}

	// Jitter is ±20%: the first wait is 160–240ms, the second 480–720ms.
	gaps := clock.gaps()
	t.Logf("waits between attempts: %v", gaps)
	if len(gaps) != 2 {
		t.Fatalf("%d waits between attempts, want 2", len(gaps))
	}
	if gaps[0] < 120*time.Millisecond || gaps[0] > 3*time.Second {
		t.Errorf("first retry after %v, want about 200ms", gaps[0])
	}
	if gaps[1] <= gaps[0] {
		t.Errorf("second retry after %v, not longer than the first (%v)", gaps[1], gaps[0])
	}

	waitFor(t, 5*time.Second, "three delivery log lines", func() bool { return len(d.deliveryLog(id)) >= 3 })
	lines := d.deliveryLog(id)
	var statuses []string
	for i, l := range lines {
		statuses = append(statuses, l["status"])
		if l["rcpt"] != to[0] || l["attempt"] != fmt.Sprint(i+1) || l["relay"] == "" {
			t.Errorf("log line %d: rcpt=%q attempt=%q relay=%q, want rcpt=%s attempt=%d and a relay", i, l["rcpt"], l["attempt"], l["relay"], to[0], i+1)
		}
	}
	if want := []string{"deferred", "deferred", "sent"}; !slices.Equal(statuses, want) {
		t.Errorf("log statuses %v, want %v", statuses, want)
	}
	for _, l := range lines[:min(2, len(lines))] {
		if !strings.HasPrefix(l["reply"], "451 4.3.0") || !strings.Contains(l["reply"], "Try again later") {
			t.Errorf("deferred log line reply=%q, want the relay's 451 4.3.0 text", l["reply"])
		}
	}
	d.waitQueueEmpty(t, 5*time.Second)
}

// TestRelayDropsConnection: SMTP on the unix socket → relayq → smtptest
// relay that hangs up during the message (mid-body, or after the final dot
// before replying). The message is tried again and delivered once the relay
// behaves; a hang-up after the dot is logged as a possible duplicate.
func TestRelayDropsConnection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   []smtptest.Step
		wasDup bool // the dot was sent: relayq must say it may be a duplicate
	}{
		{"mid-DATA", smtptest.Times(2, smtptest.Step{Fault: smtptest.Drop, AfterBytes: 300}), false},
		{"after final dot", []smtptest.Step{{Fault: smtptest.Drop}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Body: tc.body}})
			d := startDaemon(t, relay)
			from, to := "drop@example.org", []string{"rcpt@example.net"}
			body := newMessage(2, from, to, 40)
			id := d.submit(t, from, to, body)

			got := relay.WaitMessages(t, 1, 20*time.Second)
			if !sameMessage(got[0].Body, body) {
				t.Errorf("body differs:\n got %q\nwant %q", got[0].Body, body)
			}
			attempts := len(tc.body) + 1
			waitFor(t, 5*time.Second, "the delivery log lines", func() bool { return len(d.deliveryLog(id)) >= attempts })
			lines := d.deliveryLog(id)
			for i, l := range lines {
				want := "deferred"
				if i == attempts-1 {
					want = "sent"
				}
				if l["status"] != want {
					t.Errorf("log line %d: status=%q, want %s", i, l["status"], want)
				}
			}
			if tc.wasDup && lines[0]["possible_duplicate"] != "true" {
				t.Errorf("first attempt lost the reply after the dot, but its log line has no possible_duplicate=true: %v", lines[0])
			}
			d.waitQueueEmpty(t, 5*time.Second)
			if n := len(relay.Messages()); n != 1 {
				t.Errorf("relay accepted %d transactions, want 1", n)
			}
		})
	}
}

// TestQueueListShowsDeferred: SMTP on the unix socket → relayq → smtptest
// relay that greylists every recipient (450). `relayq queue list --json`
// shows the message deferred with the relay's reply; once the relay
// relents, the message is delivered and the queue is empty.
func TestQueueListShowsDeferred(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"*": smtptest.Times(1000, smtptest.Reply(450, "4.7.1 Greylisted, try again later"))},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("retry", "initial_interval", `"300ms"`)
	})
	from, to := "grey@example.org", []string{"rcpt@example.net"}
	body := newMessage(3, from, to, 3)
	id := d.submit(t, from, to, body)

	var m listed
	waitFor(t, 10*time.Second, "queue list to show the message deferred", func() bool {
		for _, l := range d.queueList(t) {
			if l.ID == id && len(l.Recipients) == 1 && l.Recipients[0].Status == "deferred" {
				m = l
				return true
			}
		}
		return false
	})
	r := m.Recipients[0]
	if r.Address != to[0] || !strings.Contains(r.LastReply, "450 4.7.1 Greylisted, try again later") ||
		r.ReplyCode != 450 || r.Enhanced != "4.7.1" || r.Attempts < 1 {
		t.Errorf("recipient %+v: want %s deferred with the relay's 450 4.7.1 reply", r, to[0])
	}
	if m.From != from || m.Attempts < 1 || m.NextAttempt == nil || m.Size <= 0 || m.Created.IsZero() {
		t.Errorf("queue list entry %+v: want from %s, attempts ≥ 1, a next attempt, a size and a creation time", m, from)
	}
	if m.Submitter.UID != os.Getuid() || m.Submitter.Via != "socket" {
		t.Errorf("submitter %+v, want uid %d via socket", m.Submitter, os.Getuid())
	}

	relay.SetScript(smtptest.Script{})
	got := relay.WaitMessages(t, 1, 10*time.Second)
	if !sameMessage(got[0].Body, body) {
		t.Errorf("body differs:\n got %q\nwant %q", got[0].Body, body)
	}
	d.waitQueueEmpty(t, 5*time.Second)
}
