package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestKilledWhileRecoveringKeepsWhatItTook: raw SMTP sessions (loopback
// TCP) → relayq serve recovering after a kill -9 (40k held messages of
// 16 KB, ~700 MiB, dropped from the page cache: the open takes about a
// second) → maildrop → smtptest relay.
//
// Messages acknowledged with 250 while the queue opens are in the
// maildrop; relayq is killed again (kill -9) while it still recovers,
// before it has imported any of them, and started again: it takes more
// mail while it recovers the second time, then once ready imports the
// whole maildrop. Every message acknowledged reaches the relay exactly
// once (no import ran before the kill, so the import's duplicate window
// was never open), the maildrop is empty, and the queue file checks out.
func TestKilledWhileRecoveringKeepsWhatItTook(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := newDaemon(t, relay, func(s settings) { s.set("submission", "listen", fmt.Sprintf("[%q]", listen)) })
	buildHeldBacklog(t, d, 40000)
	d.start()
	d.kill() // a crash: the next start reads the file through first

	var acked []string // recipients of the messages that got a 250
	recover := func(run int) {
		t.Helper()
		dropFromCache(t, filepath.Join(d.dir, "queue.db"))
		start := time.Now()
		d.mu.Lock()
		d.proc = d.spawn()
		d.mu.Unlock()
		waitFor(t, 10*time.Second, "the loopback listener to answer", func() bool {
			s := dialSession(listen)
			if s != nil {
				s.close()
			}
			return s != nil
		})
		for i := range 5 {
			rcpt := fmt.Sprintf("run%d-%d@example.net", run, i)
			body := fmt.Appendf(nil, "Subject: %s\r\n\r\ntaken while recovering\r\n", rcpt)
			id, err := submitSMTP("tcp", listen, "early@example.org", []string{rcpt}, body)
			if err != nil {
				t.Fatalf("run %d: message %d while recovering: %v", run, i, err)
			}
			acked = append(acked, rcpt)
			t.Logf("run %d: %s queued as %s, %v after exec", run, rcpt, id, time.Since(start).Round(time.Millisecond))
		}
		if d.ready() {
			t.Fatalf("run %d: relayq was ready %v after exec, before the messages while recovering were in: the queue opened too fast for this test", run, time.Since(start))
		}
	}
	recover(1)
	d.kill()
	if n := len(maildropFiles(t, d)); n != 5 {
		t.Errorf("after the kill, the maildrop holds %d files, want the 5 acknowledged", n)
	}
	recover(2)
	waitFor(t, 60*time.Second, "relayq to be ready", d.ready)
	if _, err := submitSMTP("tcp", listen, "late@example.org", []string{"ready@example.net"}, []byte("Subject: ready\r\n\r\nonce ready\r\n")); err != nil {
		t.Fatalf("once ready: %v", err)
	}
	acked = append(acked, "ready@example.net")

	relay.WaitMessages(t, len(acked), 30*time.Second)
	time.Sleep(time.Second) // a duplicate would come right after
	count := map[string]int{}
	for _, m := range relay.Messages() {
		count[strings.Join(m.To, ",")]++
	}
	for _, rcpt := range acked {
		if count[rcpt] != 1 {
			t.Errorf("relay got %d messages for %s, want 1 (all: %v)", count[rcpt], rcpt, count)
		}
	}
	if len(count) != len(acked) {
		t.Errorf("relay got mail for %d recipients, want %d: %v", len(count), len(acked), count)
	}
	if files := maildropFiles(t, d); len(files) != 0 {
		t.Errorf("maildrop holds %q once everything was delivered", files)
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d after SIGTERM, want 0", code)
	}
	if res := d.relayq("queue", "check"); res.code != 0 {
		t.Errorf("relayq queue check: %v", res)
	}
}
