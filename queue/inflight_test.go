package queue

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestInterruptedAfterStop: a message out for delivery when the store
// stopped (its lease never ended) is Interrupted on every lease after the
// restart until it leaves the queue; one whose attempt was recorded, or
// which was released, is not; a clean run leaves nothing interrupted.
func TestInterruptedAfterStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := put(t, q, "out\r\n", "a@x.org")
	done := put(t, q, "done\r\n", "a@x.org")
	released := put(t, q, "released\r\n", "a@x.org")
	leases, err := q.Lease(3)
	if err != nil || len(leases) != 3 {
		t.Fatalf("lease: %d, %v", len(leases), err)
	}
	for _, l := range leases {
		switch l.ID {
		case done:
			if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Delivered, Reply: reply250}}); err != nil {
				t.Fatal(err)
			}
		case released:
			if err := q.Release(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	q.Close() // as a crash would: out's lease is still held

	q, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	marked := func() map[string]bool {
		t.Helper()
		ls, err := q.Lease(10)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, l := range ls {
			got[l.ID] = l.Interrupted
			if l.ID == out {
				// Deferred: still queued, still marked.
				if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Deferred, Reply: reply451}}); err != nil {
					t.Fatal(err)
				}
			} else if err := q.Release(l); err != nil {
				t.Fatal(err)
			}
		}
		return got
	}
	if got := marked(); len(got) != 2 || !got[out] || got[released] {
		t.Fatalf("after the restart: interrupted %v, want only %s of %s and %s", got, out, out, released)
	}
	if !q.interrupted(out) {
		t.Error("a deferred attempt cleared the mark: a later delivery would go unmarked")
	}
	q.Close()

	// A clean stop (every lease ended) leaves nothing interrupted.
	q, err = Open(path, Options{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if len(q.interruptedBy) != 0 {
		t.Errorf("after a clean stop: %v interrupted, want none", q.interruptedBy)
	}
}

// TestInflightJournalStaysSmall: leases that come and go rewrite the
// journal once it passes inflightCompactAt, keeping only the open ones.
func TestInflightJournalStaysSmall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.inflight")
	j, interrupted, err := openInflight(path, func(err error) { t.Errorf("journal stopped: %v", err) }, slog.Default())
	if err != nil || len(interrupted) != 0 {
		t.Fatalf("open: %v %v", interrupted, err)
	}
	j.begin([]string{"keep1", "keep2"})
	for i := range 20000 {
		id := "MSG" + strconv.Itoa(i)
		j.begin([]string{id})
		j.end(id)
	}
	j.end("keep2")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > inflightCompactAt {
		t.Errorf("journal is %d bytes after 20,000 leases, want at most %d", fi.Size(), inflightCompactAt)
	}
	j.close()
	open, err := readInflight(path)
	if err != nil || len(open) != 1 || !open["keep1"] {
		t.Errorf("journal says %v open (%v), want keep1 only", open, err)
	}
}

// TestInflightJournalModeIsFixed: the journal (it names the messages out
// for delivery) kept whatever mode an existing file had, since opening it
// with O_TRUNC does not change that. It is set to 0600 at open, with a
// warning naming the mode it had, as the queue file is.
func TestInflightJournalModeIsFixed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	journal := path + inflightSuffix
	if err := os.WriteFile(journal, []byte("+0000000000000000ABCD\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(journal, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	var log logBuffer
	q := openAt(t, path, Options{Logger: log.logger()})
	if fi, err := os.Stat(journal); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode after open: %v, %v; want 0600", fi.Mode(), err)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "mode=0644") || !strings.Contains(log.String(), "in-flight journal") {
		t.Errorf("log %q: want a warning about the in-flight journal with mode=0644", log.String())
	}
	if q.inflight == nil {
		t.Error("the journal is off after its mode was fixed")
	}
}

// TestOutcomesOfACommitEndTheirLeasesInOneWrite: the outcomes one commit
// records end their leases in the journal with one write, once that
// commit is on disk (a write per worker was a write(2) per message), and
// the journal then holds none of them open.
func TestOutcomesOfACommitEndTheirLeasesInOneWrite(t *testing.T) {
	q, path := openTest(t, Options{})
	for range 3 {
		put(t, q, "x\r\n", "a@x.org")
	}
	leases, err := q.Lease(3)
	if err != nil || len(leases) != 3 {
		t.Fatalf("lease: %d, %v", len(leases), err)
	}
	release := holdCommitter(t, q)
	recorded := make(chan error, len(leases))
	for _, l := range leases {
		go func() {
			_, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Delivered, Reply: reply250}})
			recorded <- err
		}()
	}
	waitQueued(t, q, len(leases))
	q.inflight.mu.Lock()
	before := q.inflight.writes
	q.inflight.mu.Unlock()
	release()
	for range leases {
		if err := <-recorded; err != nil {
			t.Fatal(err)
		}
	}
	q.inflight.mu.Lock()
	writes := q.inflight.writes - before
	q.inflight.mu.Unlock()
	if writes != 1 {
		t.Errorf("three outcomes of one commit made %d journal writes, want 1", writes)
	}
	open, err := readInflight(path + inflightSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 0 {
		t.Errorf("the journal holds %v open after every outcome was recorded", open)
	}
}
