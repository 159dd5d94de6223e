package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"relayq/smallfs"
	"relayq/transport/smtptest"
)

// holdQueueFile takes bbolt's lock on the queue file at path (an
// exclusive flock, as an offline `relayq queue check` or a backup tool
// holds it), so that relayq serve, which claims the file and listens
// before it opens the queue, stays in its starting window until release.
// The daemon waits a second for the lock (queue.Options.LockTimeout), so
// release must come within that.
func holdQueueFile(t *testing.T, path string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	released, held := false, time.Now()
	release = func() {
		if !released {
			released = true
			f.Close()
			t.Logf("held the queue file for %v (relayq waits %v for it)", time.Since(held).Round(time.Millisecond), time.Second)
		}
	}
	t.Cleanup(release)
	return release
}

// submitWhileStarting waits for relayq's socket to greet, then submits one
// message per recipient over it and checks that each 250 says the message
// is in the maildrop (relayq is starting).
func submitWhileStarting(t *testing.T, d *daemon, rcpts ...string) {
	t.Helper()
	waitFor(t, 5*time.Second, "the submission socket to greet", func() bool { return greets("unix", d.submitSocket()) })
	for _, rcpt := range rcpts {
		body := fmt.Appendf(nil, "Subject: %s\r\n\r\ntaken while starting\r\n", rcpt)
		id, err := submitSMTP("unix", d.submitSocket(), "early@example.org", []string{rcpt}, body)
		if err != nil {
			t.Fatalf("message for %s while starting: %v", rcpt, err)
		}
		if d.ready() {
			t.Fatalf("relayq was ready before the message for %s was in (queued as %s): not the starting window", rcpt, id)
		}
	}
}

// deliveredOnce checks that the relay got exactly one message for each of
// rcpts and none for anyone else.
func deliveredOnce(t *testing.T, relay *smtptest.Server, rcpts ...string) {
	t.Helper()
	relay.WaitMessages(t, len(rcpts), 30*time.Second)
	time.Sleep(500 * time.Millisecond) // a duplicate would come right after
	count := map[string]int{}
	for _, m := range relay.Messages() {
		count[strings.Join(m.To, ",")]++
	}
	for _, r := range rcpts {
		if count[r] != 1 {
			t.Errorf("relay got %d messages for %s, want 1 (all: %v)", count[r], r, count)
		}
	}
	if len(count) != len(rcpts) {
		t.Errorf("relay got mail for %d recipients, want %d: %v", len(count), len(rcpts), count)
	}
}

// TestSigtermWhileStarting: SMTP on the Unix socket → relayq serve still
// in its starting window (the queue file held by another process) →
// maildrop → smtptest relay. A SIGTERM comes after relayq has answered
// 250 for messages it keeps in the maildrop and before the queue is
// open: relayq stops within its grace period with exit 0, and the next
// start delivers every acknowledged message exactly once.
func TestSigtermWhileStarting(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	if code := d.stop(); code != 0 {
		t.Fatalf("first stop: exit %d", code)
	}
	release := holdQueueFile(t, filepath.Join(d.dir, "queue.db"))
	p := d.launch()
	submitWhileStarting(t, d, "term1@example.net", "term2@example.net")
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond) // the signal is handled before the queue opens
	release()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("relayq serve still running 15s after SIGTERM while starting")
	}
	d.mu.Lock()
	d.proc = nil
	d.mu.Unlock()
	if code := p.exitCode(); code != 0 {
		t.Errorf("SIGTERM while starting: exit %d, want 0", code)
	}
	d.start()
	deliveredOnce(t, relay, "term1@example.net", "term2@example.net")
	waitFor(t, 10*time.Second, "the maildrop to empty", func() bool { return len(maildropFiles(t, d)) == 0 })
}

// TestDamagedQueueAfterStartingIntake: SMTP on the Unix socket → relayq
// serve in its starting window → maildrop; then the queue file turns out
// damaged when it opens. relayq exits 65 pointing at `relayq queue
// check`, and says that the messages it took while starting wait in the
// maildrop. Once the operator follows queue check's advice (the damaged
// file moved aside), the next start delivers each of them exactly once.
func TestDamagedQueueAfterStartingIntake(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"old@example.net": smtptest.Times(1000, smtptest.Reply(451, "4.3.0 Not now"))},
	}})
	d := startDaemon(t, relay)
	for i := range 20 {
		d.submit(t, "old@example.org", []string{"old@example.net"}, newMessage(i, "old@example.org", []string{"old@example.net"}, 5))
	}
	d.stop()
	path := filepath.Join(d.dir, "queue.db")
	old := "old@example.net"
	if n := scrambleLeafPages(t, path, append([]byte{byte(len(old))}, old...)); n == 0 {
		t.Fatal("found no page holding message records")
	}

	release := holdQueueFile(t, path)
	p := d.launch()
	taken := []string{"kept1@example.net", "kept2@example.net", "kept3@example.net"}
	submitWhileStarting(t, d, taken...)
	release()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("relayq serve started on a damaged queue file")
	}
	d.mu.Lock()
	d.proc = nil
	d.mu.Unlock()
	log := d.log.String()
	if code := p.exitCode(); code != 65 || !strings.Contains(log, "run `relayq queue check`") || strings.Contains(log, "panic:") {
		t.Errorf("relayq serve on a damaged file exited %d, want 65 pointing at relayq queue check (and no crash):\n%s", code, log)
	}
	if files := maildropFiles(t, d); len(files) != len(taken) {
		t.Fatalf("maildrop holds %q, want the %d messages taken while starting", files, len(taken))
	}
	if !strings.Contains(log, fmt.Sprintf("%d messages wait in the maildrop", len(taken))) {
		t.Errorf("relayq serve's failure does not say that the %d messages it acknowledged while starting wait in the maildrop:\n%s", len(taken), log)
	}
	// queue check's advice: move the damaged file aside and start.
	if err := os.Rename(path, path+".damaged"); err != nil {
		t.Fatal(err)
	}
	d.start()
	deliveredOnce(t, relay, taken...)
}

// TestDiskFullWhileStarting: SMTP on the Unix socket → relayq serve in
// its starting window, its queue and maildrop on a 16 MiB tmpfs that is
// full → maildrop → smtptest relay. With min_free kept, a message is
// refused at MAIL (452 4.3.1); with min_free = 0 the maildrop file's
// write itself hits ENOSPC and the message gets a 4xx after its dot.
// Never a 250 for a message not on disk, no temporary file left behind;
// once the queue is open and room is back, intake takes mail again and
// delivers exactly what it acknowledged.
func TestDiskFullWhileStarting(t *testing.T) {
	for _, minFree := range []string{`"1MiB"`, "0"} {
		t.Run("min_free="+minFree, func(t *testing.T) {
			mnt := smallfs.Mount(t, "16m")
			relay := smtptest.NewServer(t, smtptest.Options{})
			dbPath := filepath.Join(mnt, "queue.db")
			d := startDaemon(t, relay, func(s settings) {
				s.set("queue", "path", tomlString(dbPath))
				s.set("submission", "maildrop", tomlString(filepath.Join(mnt, "maildrop")))
				s.set("queue", "min_free", minFree)
			})
			d.submit(t, "before@example.org", []string{"before@example.net"}, []byte("Subject: before\r\n\r\nbefore\r\n"))
			relay.WaitMessages(t, 1, 10*time.Second)
			if code := d.stop(); code != 0 {
				t.Fatalf("stop: exit %d", code)
			}
			filler := filepath.Join(mnt, "filler")
			smallfs.Fill(t, filler)

			release := holdQueueFile(t, dbPath)
			d.launch()
			waitFor(t, 5*time.Second, "the submission socket to greet", func() bool { return greets("unix", d.submitSocket()) })
			body := newMessage(1, "full@example.org", []string{"full@example.net"}, 2000) // ~150 KB
			_, err := submitSMTP("unix", d.submitSocket(), "full@example.org", []string{"full@example.net"}, body)
			if code := replyCode(err); err == nil || !strings.HasPrefix(code, "4") {
				t.Errorf("a message while starting on a full disk: %v (reply %q), want a 4xx refusal", err, code)
			}
			if d.ready() {
				t.Fatal("relayq was ready before the message was tried: not the starting window")
			}
			if entries, err := os.ReadDir(filepath.Join(mnt, "maildrop")); err != nil || len(entries) != 0 {
				t.Errorf("maildrop holds %v (%v) after the refusal, want nothing", entries, err)
			}
			release()
			waitFor(t, 10*time.Second, "relayq to be ready", d.ready)
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "intake to take mail again", func() bool {
				_, err := submitSMTP("unix", d.submitSocket(), "after@example.org", []string{"after@example.net"}, []byte("Subject: after\r\n\r\nafter\r\n"))
				return err == nil
			})
			deliveredOnce(t, relay, "before@example.net", "after@example.net")
		})
	}
}

// TestAliasListWhileStarting: SMTP on the Unix socket → relayq serve in
// its starting window → maildrop → smtptest relay. A message to a local
// alias that names more addresses than max_recipients (one RCPT, as with
// the queue open: max_recipients counts RCPT commands) and carries large
// addresses is acknowledged while relayq starts; the import queues it to
// every address, as a session with the queue open does. Before, the
// import applied max_recipients to the expanded list and set the
// acknowledged message aside (.bad), never delivered.
func TestAliasListWhileStarting(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	var list []string
	for i := range 30 {
		list = append(list, fmt.Sprintf("%q", fmt.Sprintf("member%02d.%s@example.net", i, strings.Repeat("x", 40))))
	}
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "max_recipients", "10")
		s.set("aliases", "team", "["+strings.Join(list, ", ")+"]")
	})
	if code := d.stop(); code != 0 {
		t.Fatalf("first stop: exit %d", code)
	}
	release := holdQueueFile(t, filepath.Join(d.dir, "queue.db"))
	d.launch()
	submitWhileStarting(t, d, "team@localhost")
	release()
	waitFor(t, 10*time.Second, "relayq to be ready", d.ready)
	relay.WaitMessages(t, 1, 20*time.Second)
	got := map[string]bool{}
	for _, m := range relay.Messages() {
		for _, to := range m.To {
			got[to] = true
		}
	}
	if len(got) != len(list) {
		t.Errorf("the relay got the message for %d addresses, want the alias's %d: %v", len(got), len(list), got)
	}
	if files := maildropFiles(t, d); len(files) != 0 {
		t.Errorf("maildrop holds %q once the message is queued", files)
	}
}

// TestLongAliasListWhileStarting: as TestAliasListWhileStarting, with an
// alias (aliases_file) of 15,000 addresses, over a megabyte of envelope,
// on a message near max_message_size: intake's own maildrop file is then
// larger than max_message_size plus the megabyte a maildrop file's
// envelope may add, which the import refuses before reading a file a
// local user wrote. Intake's own file (owned by the daemon, which no user
// can write) is read whole and queued.
func TestLongAliasListWhileStarting(t *testing.T) {
	d := newDaemon(t, nil, func(s settings) {
		s.set("submission", "max_message_size", `"64KiB"`)
	})
	var b strings.Builder
	b.WriteString("crowd: ")
	for i := range 15000 {
		if i > 0 {
			b.WriteString(",\n  ") // continuation lines, as /etc/aliases has them
		}
		fmt.Fprintf(&b, "member%05d.%s@example.net", i, strings.Repeat("x", 50))
	}
	b.WriteString("\n")
	aliases := filepath.Join(d.dir, "aliases")
	writeFile(t, aliases, b.String())
	d.settings.set("aliases", "aliases_file", tomlString(aliases))
	d.writeConfig()
	d.start()
	if code := d.stop(); code != 0 {
		t.Fatalf("first stop: exit %d", code)
	}
	release := holdQueueFile(t, filepath.Join(d.dir, "queue.db"))
	d.launch()
	waitFor(t, 5*time.Second, "the submission socket to greet", func() bool { return greets("unix", d.submitSocket()) })
	body := newMessage(1, "early@example.org", []string{"crowd@localhost"}, 700) // ~60 KB
	if _, err := submitSMTP("unix", d.submitSocket(), "early@example.org", []string{"crowd@localhost"}, body); err != nil {
		t.Fatalf("message for the alias while starting: %v", err)
	}
	release()
	waitFor(t, 10*time.Second, "relayq to be ready", d.ready)
	waitFor(t, 10*time.Second, "the message to be queued", func() bool { return len(d.queueList(t)) == 1 })
	if files := maildropFiles(t, d); len(files) != 0 {
		t.Errorf("maildrop holds %q once the message is queued", files)
	}
}
