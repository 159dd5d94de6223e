package tests

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestStraySignalsAreIgnored: SIGUSR1, SIGUSR2 and SIGALRM (a `kill -USR1`
// meant for another daemon, a logrotate script that asks for a reopened
// log) leave relayq serve running, the same process, taking and
// delivering mail; each is logged. Before, Go's default ended the
// process at once, as a crash.
func TestStraySignalsAreIgnored(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	p := d.running().cmd.Process
	for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM} {
		if err := p.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "three log lines about ignored signals", func() bool {
		return strings.Count(d.log.String(), "signal ignored") == 3
	})
	from, to := "cron@example.org", []string{"a@example.net"}
	d.submit(t, from, to, newMessage(1, from, to, 3))
	waitFor(t, 10*time.Second, "the message at the relay", func() bool { return len(relay.Messages()) == 1 })
	if d.running().cmd.Process.Pid != p.Pid {
		t.Fatal("relayq serve was restarted")
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d after the signals", code)
	}
}
