package tests

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestSendmailWhileDaemonDown: sendmail → maildrop directory (the daemon
// stopped, or killed and its socket file left behind) → relayq, started
// again, imports it → smtptest relay. sendmail exits 0 at once and the
// message is delivered unchanged once the daemon runs.
func TestSendmailWhileDaemonDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
	}{
		{"stopped", false},
		{"killed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := smtptest.NewServer(t, smtptest.Options{})
			d := startDaemon(t, relay) // creates the maildrop directory
			if tc.kill {
				d.kill()
			} else if code := d.stop(); code != 0 {
				t.Errorf("relayq serve exited %d after SIGTERM, want 0", code)
			}
			from, to := "down@example.org", []string{"rcpt@example.net", "other@example.com"}
			body := newMessage(8, from, to, 6)
			res := d.sendmail(body, append([]string{"-i", "-f", from}, to...)...)
			if res.code != 0 {
				t.Fatalf("sendmail with the daemon down: %v; want exit 0 (maildrop)", res)
			}
			files, _ := os.ReadDir(d.maildrop())
			if len(files) == 0 {
				t.Errorf("sendmail exited 0 but %s is empty", d.maildrop())
			}

			d.start()
			got := relay.WaitMessages(t, 1, 15*time.Second)
			if !sameMessage(got[0].Body, body) {
				t.Errorf("body differs:\n got %q\nwant %q", got[0].Body, body)
			}
			if got[0].From != from || !slices.Equal(slices.Sorted(slices.Values(got[0].To)), slices.Sorted(slices.Values(to))) {
				t.Errorf("envelope %s → %q, want %s → %q", got[0].From, got[0].To, from, to)
			}
			d.waitQueueEmpty(t, 10*time.Second)
			waitFor(t, 5*time.Second, "the maildrop to be emptied", func() bool {
				files, _ := os.ReadDir(d.maildrop())
				return len(files) == 0
			})
			if n := len(relay.Messages()); n != 1 {
				t.Errorf("relay accepted %d transactions, want 1", n)
			}
		})
	}
}

// TestSendmailNowhereToWrite: sendmail with the daemon down and a maildrop
// that cannot be created (its parent is a regular file, which stops root
// too) exits 75 with a message, and nothing is claimed to be sent.
func TestSendmailNowhereToWrite(t *testing.T) {
	d := newDaemon(t, nil)
	notDir := filepath.Join(d.dir, "not-a-directory")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d.settings.set("submission", "maildrop", tomlString(filepath.Join(notDir, "maildrop")))
	d.writeConfig()
	from, to := "nowhere@example.org", []string{"rcpt@example.net"}
	res := d.sendmail(newMessage(9, from, to, 2), append([]string{"-i", "-f", from}, to...)...)
	if res.code != 75 {
		t.Errorf("sendmail with no daemon and no maildrop: %v; want exit 75", res)
	}
	if res.stderr == "" {
		t.Error("sendmail exited without saying why")
	}
}
