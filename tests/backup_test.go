package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"relayq/queue"
	"relayq/smallfs"
	"relayq/transport/smtptest"
)

// TestBackupWhileServing (catalogue J2): `relayq backup` taken while four
// submitters keep the daemon busy (the relay down, so everything waits)
// writes a copy, mode 0600, that passes the queue check. Restored in the
// queue file's place, with relayq started against a relay that works, it
// delivers every message acknowledged before the backup began, each once,
// unaltered.
func TestBackupWhileServing(t *testing.T) {
	d := startDaemon(t, nil)
	from, to := "backup@example.org", []string{"rcpt@example.net"}
	var mu sync.Mutex
	acked := map[int][]byte{}
	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for seq := w; ; seq += 4 {
				select {
				case <-stop:
					return
				default:
				}
				body := newMessage(seq, from, to, 40)
				if _, err := submitSMTP("unix", d.submitSocket(), from, to, body); err != nil {
					continue // the backup never makes a submission fail, but it is not what is tested here
				}
				mu.Lock()
				acked[seq] = body
				mu.Unlock()
				n.Add(1)
			}
		})
	}
	waitFor(t, time.Minute, "2,000 acknowledged submissions", func() bool { return n.Load() >= 2000 })
	mu.Lock()
	before := make(map[int][]byte, len(acked))
	for seq, body := range acked {
		before[seq] = body
	}
	mu.Unlock()

	dst := filepath.Join(t.TempDir(), "relayq.backup")
	res := d.relayq("backup", dst)
	close(stop)
	wg.Wait()
	if res.code != 0 || !strings.Contains(res.stdout, "while relayq runs") {
		t.Fatalf("relayq backup with the daemon running: %v", res)
	}
	t.Logf("%s (%d acknowledged before it, %d in all)", strings.TrimSpace(res.stdout), len(before), n.Load())
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the backup has mode %v, want 0600", fi.Mode().Perm())
	}
	if problems, err := queue.CheckFile(dst, time.Second); err != nil || len(problems) > 0 {
		t.Fatalf("check of the backup: %v %v", err, problems)
	}
	if left, _ := filepath.Glob(dst + ".relayq-backup-*"); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// Restore: stop, put the copy in place, start against a relay that
	// takes mail.
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d", code)
	}
	good := smtptest.NewServer(t, smtptest.Options{})
	// As the README says: the copy in the queue file's place, nothing
	// else touched (the freelist saved at the stop is the old file's,
	// and relayq sees that it does not match).
	if _, err := os.Stat(filepath.Join(d.dir, "queue.db.freelist")); err != nil {
		t.Errorf("no freelist saved at the stop: %v", err)
	}
	copyFile(t, dst, filepath.Join(d.dir, "queue.db"))
	os.Chmod(filepath.Join(d.dir, "queue.db"), 0o600)
	d.settings.set("relay", "url", tomlString(relayURL(good, false)))
	d.writeConfig()
	d.start()
	waitFor(t, 2*time.Minute, "every message acknowledged before the backup at the relay", func() bool {
		seen := map[int]bool{}
		for _, r := range good.Messages() {
			seen[seqOf(r.Body)] = true
		}
		for seq := range before {
			if !seen[seq] {
				return false
			}
		}
		return true
	})
	d.waitQueueEmpty(t, time.Minute)
	count := map[int]int{}
	for _, r := range good.Messages() {
		seq := seqOf(r.Body)
		count[seq]++
		if want, ok := acked[seq]; !ok {
			t.Errorf("message %d was never acknowledged", seq)
		} else if !sameMessage(r.Body, want) {
			t.Errorf("message %d arrived altered", seq)
		}
	}
	for seq, c := range count {
		if c > 1 {
			t.Errorf("message %d arrived %d times", seq, c)
		}
	}
}

// TestBackupCommand: with relayq stopped the command copies the file
// itself; a backup over an existing one replaces it only when complete;
// and what cannot work fails with its own exit code, leaving nothing
// behind: no PATH (64), a directory that does not exist (73), a file
// system without room (74, the old backup kept).
func TestBackupCommand(t *testing.T) {
	d := startDaemon(t, nil)
	from, to := "backup@example.org", []string{"rcpt@example.net"}
	for seq := range 50 {
		d.submit(t, from, to, newMessage(seq, from, to, 400))
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d", code)
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "relayq.backup")
	res := d.relayq("backup", dst)
	if res.code != 0 || !strings.Contains(res.stdout, "from the stopped queue") || !strings.Contains(res.stdout, "50 message(s)") {
		t.Fatalf("relayq backup with relayq stopped: %v", res)
	}
	if res := d.relayq("backup", filepath.Join(d.dir, ".", "queue.db")); res.code != 64 || !strings.Contains(res.stderr, "the queue file itself") {
		t.Errorf("relayq backup onto the queue file: %v, want exit 64", res)
	}
	if res := d.relayq("backup"); res.code != 64 {
		t.Errorf("relayq backup without PATH: %v, want exit 64", res)
	}
	if res := d.relayq("backup", filepath.Join(dir, "no", "such", "dir", "b")); res.code != 73 {
		t.Errorf("relayq backup into a missing directory: %v, want exit 73", res)
	}

	mnt := smallfs.Mount(t, "1m")
	small := filepath.Join(mnt, "relayq.backup")
	if err := os.WriteFile(small, []byte("an older backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	for seq := 50; seq < 100; seq++ {
		d.submit(t, from, to, newMessage(seq, from, to, 400))
	}
	res = d.relayq("backup", small)
	if res.code != 74 || !strings.Contains(res.stderr, "free") {
		t.Errorf("relayq backup onto a full file system: %v, want exit 74", res)
	}
	if b, _ := os.ReadFile(small); string(b) != "an older backup" {
		t.Errorf("the older backup was changed: %q", b)
	}
	if left, _ := filepath.Glob(small + ".relayq-backup-*"); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if res := d.relayq("status"); res.code != 0 {
		t.Errorf("relayq status after the failed backup: %v", res)
	}
}

// TestKill9DuringBackup: relayq is killed with SIGKILL while `relayq
// backup` runs, at a random moment. Either the backup completed (exit 0,
// a sound copy at PATH) or it failed (non-zero, nothing at PATH); no
// temporary file is left, the queue file passes its check after the
// restart, and every message is still queued.
func TestKill9DuringBackup(t *testing.T) {
	d := startDaemon(t, nil)
	from, to := "backup@example.org", []string{"rcpt@example.net"}
	const n = 400
	for seq := range n {
		d.submit(t, from, to, newMessage(seq, from, to, 600))
	}
	dir := t.TempDir()
	for round := range 4 {
		dst := filepath.Join(dir, fmt.Sprintf("b%d", round))
		done := make(chan cmdResult, 1)
		go func() { done <- d.relayq("backup", dst) }()
		time.Sleep(time.Duration(round*7) * time.Millisecond)
		d.kill()
		res := <-done
		_, statErr := os.Stat(dst)
		switch {
		case res.code == 0:
			if problems, err := queue.CheckFile(dst, time.Second); err != nil || len(problems) > 0 {
				t.Errorf("round %d: backup reported written, check: %v %v", round, err, problems)
			}
		case statErr == nil:
			t.Errorf("round %d: backup failed (%v) but %s exists", round, res, dst)
		}
		t.Logf("round %d: relayq backup: exit %d %s", round, res.code, strings.TrimSpace(res.stdout+res.stderr))
		if left, _ := filepath.Glob(dst + ".relayq-backup-*"); len(left) > 0 {
			t.Errorf("round %d: temporary files left: %v", round, left)
		}
		d.start()
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d", code)
	}
	if res := d.relayq("queue", "check"); res.code != 0 {
		t.Errorf("queue check: %v", res)
	}
	d.start()
	if got := len(d.queueList(t)); got != n {
		t.Errorf("%d messages queued after the kills, want %d", got, n)
	}
}
