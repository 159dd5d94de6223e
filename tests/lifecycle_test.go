package tests

import (
	"regexp"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestSecondInstance: a second `relayq serve` on the same configuration
// (same queue) exits non-zero within seconds, saying why; the first keeps
// taking and delivering mail (SMTP on the unix socket → relayq → smtptest).
func TestSecondInstance(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)

	second := runCmdTimeout(15*time.Second, relayqBin, nil, "serve", "-c", d.config)
	if second.code == 0 || second.code == -1 {
		t.Errorf("second relayq serve: %v; want a non-zero exit within seconds", second)
	}
	if !regexp.MustCompile(`(?i)already running|locked`).MatchString(second.stderr) {
		t.Errorf("second relayq serve said %q; want it to say the queue is locked or relayq already running", second.stderr)
	}
	if d.running() == nil {
		t.Fatal("first daemon gone")
	}
	from, to := "first@example.org", []string{"rcpt@example.net"}
	body := newMessage(6, from, to, 3)
	d.submit(t, from, to, body)
	got := relay.WaitMessages(t, 1, 10*time.Second)
	if !sameMessage(got[0].Body, body) {
		t.Errorf("body differs:\n got %q\nwant %q", got[0].Body, body)
	}
	if _, _, err := d.list("queue"); err != nil {
		t.Errorf("control socket of the first daemon after the second one failed: %v", err)
	}
}

// TestSigtermDuringDelivery: SMTP on the unix socket → relayq → smtptest
// relay that is slow to answer the final dot. SIGTERM while the message is
// in flight: relayq exits 0; an attempt that finishes within
// shutdown_timeout is recorded (not sent again after a restart), one that
// does not is given back and delivered right after the restart, long before
// its lease would have run out.
func TestSigtermDuringDelivery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		step    smtptest.Step
		wantNow int // messages the relay has accepted when the daemon exited
	}{
		{"finishes within grace", smtptest.Step{Delay: 1500 * time.Millisecond}, 1},
		{"cut short", smtptest.Step{Fault: smtptest.Hang}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{tc.step}}})
			d := startDaemon(t, relay, func(s settings) {
				s.set("delivery", "shutdown_timeout", `"4s"`)
				s.set("delivery", "lease_timeout", `"10m"`)
			})
			from, to := "term@example.org", []string{"rcpt@example.net"}
			body := newMessage(7, from, to, 3)
			d.submit(t, from, to, body)
			waitFor(t, 10*time.Second, "the relay to receive DATA", func() bool { return relay.DataAttempts() >= 1 })

			start := time.Now()
			if code := d.stop(); code != 0 {
				t.Errorf("relayq serve exited %d after SIGTERM, want 0", code)
			}
			t.Logf("stopped in %v", time.Since(start))
			if n := len(relay.Messages()); n != tc.wantNow {
				t.Errorf("relay has %d messages when relayq exited, want %d", n, tc.wantNow)
			}

			d.start()
			got := relay.WaitMessages(t, 1, 15*time.Second)
			if !sameMessage(got[0].Body, body) {
				t.Errorf("body differs:\n got %q\nwant %q", got[0].Body, body)
			}
			d.waitQueueEmpty(t, 10*time.Second)
			if n := len(relay.Messages()); n != 1 {
				t.Errorf("relay accepted %d transactions, want 1", n)
			}
			if tc.wantNow == 1 {
				if n := relay.DataAttempts(); n != 1 {
					t.Errorf("relay saw %d DATA commands; a delivery recorded before shutdown was sent again", n)
				}
			}
		})
	}
}
