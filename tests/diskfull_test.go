package tests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/smallfs"
	"relayq/transport/smtptest"
)

// freeBytes is what statfs says an unprivileged writer may still use.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// replyCode is the SMTP reply in err ("452 4.3.1"), or "" if none.
func replyCode(err error) string {
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) {
		return ""
	}
	return fmt.Sprintf("%d %d.%d.%d", reply.Code, reply.EnhancedCode[0], reply.EnhancedCode[1], reply.EnhancedCode[2])
}

// TestDiskFull: SMTP on the unix socket and `relayq sendmail` → relayq whose
// queue and maildrop are on a 16 MiB tmpfs → smtptest relay that defers
// every recipient, so the queue keeps what it took. A file fills the file
// system: every submission is then answered 250 (while the queue file still
// has room inside it) or 452 4.3.1, never anything else; sendmail exits 75
// and leaves nothing behind, with the daemon up and with it down; the daemon
// starts on the full disk. Once the file is deleted, intake takes mail again
// without a restart, every acknowledged message is delivered, and the
// queue file passes `relayq queue check`, on the full disk and at the end.
func TestDiskFull(t *testing.T) {
	mnt := smallfs.Mount(t, "16m")
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"*": smtptest.Times(20000, smtptest.Reply(451, "4.3.0 Not now"))},
	}})
	dbPath, maildrop := filepath.Join(mnt, "queue.db"), filepath.Join(mnt, "maildrop")
	d := startDaemon(t, relay, func(s settings) {
		s.set("queue", "path", tomlString(dbPath))
		s.set("submission", "maildrop", tomlString(maildrop))
		s.set("delivery", "lease_timeout", `"3s"`)
		// Headroom a 16 MiB file system can keep (the default is twice
		// max_message_size, 50 MiB).
		s.set("queue", "min_free", `"1MiB"`)
	})
	filler := filepath.Join(mnt, "filler")

	acked := map[int][]byte{}
	refusedSeqs := map[int]bool{}
	seq := 0
	var mu sync.Mutex // submit runs on several goroutines at once too
	submit := func(lines int) (string, error) {
		mu.Lock()
		seq++
		n := seq
		mu.Unlock()
		from, to := fmt.Sprintf("full%d@example.org", n), []string{fmt.Sprintf("rcpt%d@example.net", n)}
		body := newMessage(n, from, to, lines)
		id, err := submitSMTP("unix", d.submitSocket(), from, to, body)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			acked[n] = body
		case replyCode(err) != "":
			refusedSeqs[n] = true
		}
		return id, err
	}
	rcpts := func() int {
		n := 0
		for _, c := range relay.Commands() {
			if strings.HasPrefix(strings.ToUpper(c), "RCPT") {
				n++
			}
		}
		return n
	}
	for range 20 {
		if _, err := submit(300); err != nil {
			t.Fatalf("before the disk is full: %v", err)
		}
	}

	// The disk fills up.
	smallfs.Fill(t, filler)
	t.Logf("file system full: %d bytes free, queue file %d bytes", freeBytes(t, mnt), fileSize(t, dbPath))
	refused := 0
	for i := 0; i < 500 && refused < 5; i++ {
		_, err := submit(700)
		switch code := replyCode(err); {
		case err == nil:
			if refused > 0 {
				// Room inside the queue file can come back as deliveries are
				// recorded; the message was stored all the same.
				t.Logf("message %d accepted after a refusal", seq)
			}
		case code == "452 4.3.1":
			refused++
		default:
			t.Fatalf("message %d on a full disk: %v, want 250 or 452 4.3.1", seq, err)
		}
	}
	if refused == 0 {
		t.Fatalf("no 452 4.3.1 after filling the disk with %d messages queued", len(acked))
	}
	t.Logf("%d messages acknowledged before the disk was full", len(acked))
	// Submissions at once share a commit: one that fails for lack of room
	// must not take the others with it, nor report success.
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if _, err := submit(700); err != nil && replyCode(err) != "452 4.3.1" {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent submission on a full disk: %v, want 250 or 452 4.3.1", err)
	}
	sendmailFull(t, d, maildrop, "452")
	// Delivery goes on (the relay defers): attempts are recorded, in the
	// room the queue's reserve gives up for them.
	tried := rcpts()
	waitFor(t, 20*time.Second, "delivery attempts on the full disk", func() bool { return rcpts() >= tried+20 })
	if d.running() == nil {
		t.Fatal("the daemon exited on the full disk")
	}
	if _, err := submit(700); replyCode(err) != "452 4.3.1" && err != nil {
		t.Errorf("still full: %v, want 250 or 452 4.3.1", err)
	}

	// Space comes back: intake resumes at once, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := submit(700); err != nil {
		t.Fatalf("after space came back: %v", err)
	}
	if res := d.sendmail(newMessage(9999, "back@example.org", []string{"back@example.net"}, 10), "-oi", "-f", "back@example.org", "back@example.net"); res.code != 0 {
		t.Fatalf("sendmail after space came back: %v", res)
	}

	// Down on a full disk: sendmail cannot fall back to the maildrop
	// either; the daemon starts all the same and refuses with 452.
	if code := d.stop(); code != 0 {
		t.Errorf("relayq serve exited %d after SIGTERM, want 0", code)
	}
	smallfs.Fill(t, filler)
	sendmailFull(t, d, maildrop, "maildrop")
	checkQueueFile(t, d)
	d.start()
	if _, err := submit(700); replyCode(err) != "452 4.3.1" && err != nil {
		t.Errorf("daemon started on a full disk: %v, want 250 or 452 4.3.1", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := submit(700); err != nil {
		t.Fatalf("after space came back: %v", err)
	}

	// Every acknowledged message is delivered.
	relay.SetScript(smtptest.Script{})
	checkAllDelivered(t, relay, acked, refusedSeqs, 90*time.Second)
	t.Logf("%d acknowledged messages delivered, %d refused with 452 and not delivered", len(acked), len(refusedSeqs))
	d.waitQueueEmpty(t, 30*time.Second)
	if code := d.stop(); code != 0 {
		t.Errorf("relayq serve exited %d after SIGTERM, want 0", code)
	}
	checkQueueFile(t, d)
}

// sendmailFull runs `relayq sendmail` on a full disk: it must exit 75 with
// want in its message, and leave no file in the maildrop.
func sendmailFull(t *testing.T, d *daemon, maildrop, want string) {
	t.Helper()
	res := d.sendmail(newMessage(9998, "full@example.org", []string{"full@example.net"}, 700), "-oi", "-f", "full@example.org", "full@example.net")
	if res.code != 75 || !strings.Contains(res.stderr, want) {
		t.Errorf("sendmail on a full disk: %v, want exit 75 and %q", res, want)
	}
	entries, err := os.ReadDir(maildrop)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("sendmail on a full disk left %s in the maildrop", e.Name())
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// checkQueueFile runs `relayq queue check` (read-only; the daemon must be
// stopped) and fails the test unless the file is sound.
func checkQueueFile(t *testing.T, d *daemon) {
	t.Helper()
	if res := d.relayq("queue", "check"); res.code != 0 {
		t.Errorf("relayq queue check: %v", res)
	}
}

// checkAllDelivered waits until the relay has every acknowledged message
// (by sequence number), then checks each arrived unaltered and that none of
// the refused ones arrived: a failed commit must not have stored it.
func checkAllDelivered(t *testing.T, relay *smtptest.Server, acked map[int][]byte, refused map[int]bool, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("the %d acknowledged messages at the relay", len(acked)), func() bool {
		got := map[int]bool{}
		for _, r := range relay.Messages() {
			got[seqOf(r.Body)] = true
		}
		for s := range acked {
			if !got[s] {
				return false
			}
		}
		return true
	})
	for _, r := range relay.Messages() {
		n := seqOf(r.Body)
		if want, ok := acked[n]; ok && !sameMessage(r.Body, want) {
			t.Errorf("message %d arrived altered", n)
		}
		if refused[n] {
			t.Errorf("message %d was refused with 452 but delivered: a failed commit stored it", n)
		}
	}
}

// TestFileSizeLimit: relayq under a file size limit (RLIMIT_FSIZE, as
// systemd's LimitFSIZE= sets it) that stops the queue file from growing.
// bbolt reports that as "file resize error" without the errno; intake must
// still answer 452 4.3.1 (try later), never 451, lose nothing it
// acknowledged, stay up, and take mail again once the limit is raised.
func TestFileSizeLimit(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"*": smtptest.Times(20000, smtptest.Reply(451, "4.3.0 Not now"))},
	}})
	d := startDaemon(t, relay)
	dbPath := filepath.Join(d.dir, "queue.db")
	pid := strconv.Itoa(d.running().cmd.Process.Pid)
	prlimit := func(limit string) {
		t.Helper()
		if out, err := exec.Command("prlimit", "--pid", pid, "--fsize="+limit).CombinedOutput(); err != nil {
			t.Fatalf("prlimit --fsize=%s: %v: %s", limit, err, out)
		}
	}

	acked := map[int][]byte{}
	refused := map[int]bool{}
	submit := func(n int) error {
		from, to := fmt.Sprintf("fsize%d@example.org", n), []string{fmt.Sprintf("rcpt%d@example.net", n)}
		body := newMessage(n, from, to, 300)
		_, err := submitSMTP("unix", d.submitSocket(), from, to, body)
		if err == nil {
			acked[n] = body
		} else if replyCode(err) != "" {
			refused[n] = true
		}
		return err
	}
	seq := 0
	for range 5 {
		seq++
		if err := submit(seq); err != nil {
			t.Fatalf("before the limit: %v", err)
		}
	}

	// The soft limit only, at the file's size: the file cannot grow, and
	// an unprivileged test can raise the limit again.
	size := fileSize(t, dbPath)
	prlimit(fmt.Sprintf("%d:", size))
	full := 0
	for i := 0; i < 2000 && full == 0; i++ {
		seq++
		switch err := submit(seq); {
		case err == nil:
		case replyCode(err) == "452 4.3.1":
			full++
		default:
			t.Fatalf("message %d at the file size limit: %v, want 250 or 452 4.3.1", seq, err)
		}
	}
	if full == 0 {
		t.Fatalf("no 452 4.3.1 with the queue file limited to %d bytes (now %d bytes, %d messages queued)", size, fileSize(t, dbPath), len(acked))
	}
	if got := fileSize(t, dbPath); got > size {
		t.Errorf("queue file grew past the limit: %d > %d bytes", got, size)
	}
	if d.running() == nil {
		t.Fatal("the daemon exited at the file size limit")
	}
	t.Logf("queue file held at %d bytes: %d messages acknowledged, then 452 4.3.1", size, len(acked))

	// The limit goes: intake resumes without a restart.
	prlimit("unlimited")
	seq++
	if err := submit(seq); err != nil {
		t.Fatalf("after the limit was raised: %v", err)
	}

	relay.SetScript(smtptest.Script{})
	checkAllDelivered(t, relay, acked, refused, 60*time.Second)
	d.waitQueueEmpty(t, 30*time.Second)
	if code := d.stop(); code != 0 {
		t.Errorf("relayq serve exited %d after SIGTERM, want 0", code)
	}
	checkQueueFile(t, d)
}
