package queue

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// logBuffer collects what a store logs; the store's background loops
// write to it while the test reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// TestDamagedKeysAreSkippedAndNamed: keys that a broken page can hold and
// relayq never writes (a schedule or history index key too short for a
// time and an ID, a key that is no queue ID where keys are message IDs)
// used to panic Lease, NextDue and the history pruner (which runs at Open)
// and Check's own walk. Now each is skipped, logged once, and named by
// Check with its bucket and its bytes in hex; the sound entries around
// them work as before.
func TestDamagedKeysAreSkippedAndNamed(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "queue.db")
	var log logBuffer
	opts := Options{Now: c.Now, HistoryRetention: time.Hour, Logger: log.logger()}
	q, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	put(t, q, "delivered\r\n", "a@x.org")
	l := leaseOne(t, q)
	if _, err := q.Record(l, delivered(l)); err != nil {
		t.Fatal(err)
	}
	put(t, q, "dead\r\n", "b@x.org")
	fail(t, q, reply550, "b@x.org")
	queued := put(t, q, "queued\r\n", "c@x.org")
	q.Close()

	timeKeys := [][]byte{{0}, []byte("8 bytes!"), []byte("short"), {0xff, 0xff}}
	damaged := map[string][][]byte{
		string(bucketSchedule): timeKeys,
		string(bucketMessages): {[]byte("ab")}, string(bucketDead): {[]byte("ab")},
		string(bucketNotices): {[]byte("ab")}, string(bucketArchive): {[]byte("ab")},
	}
	corrupt(t, path, func(tx *bolt.Tx) error {
		for b, keys := range damaged {
			for _, k := range keys {
				var v []byte
				if b != string(bucketSchedule) {
					v = []byte("{}")
				}
				if err := tx.Bucket([]byte(b)).Put(k, v); err != nil {
					return err
				}
			}
		}
		return nil
	})

	q, err = Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer q.Close()
	for range 2 {
		ls, err := q.Lease(10)
		if err != nil || len(ls) > 1 || len(ls) == 1 && ls[0].ID != queued {
			t.Fatalf("Lease = %v, %v; want %s once", ls, err, queued)
		}
	}
	if due, ok := q.NextDue(); !ok || !due.After(c.Now()) {
		t.Errorf("NextDue = %v, %v; want the lease's end", due, ok)
	}
	if msgs, err := q.List(); err != nil || len(msgs) != 2 {
		t.Errorf("List = %d messages, %v; want the queued one and the one under key \"ab\"", len(msgs), err)
	}
	if dead, err := q.ListDead(); err != nil || len(dead) != 2 {
		t.Errorf("ListDead = %d, %v", len(dead), err)
	}
	if _, err := q.Summarize(time.Time{}); err != nil {
		t.Errorf("Summarize: %v", err)
	}
	if _, err := q.FailureNoticesOwed(time.Time{}); err != nil {
		t.Errorf("FailureNoticesOwed: %v", err)
	}
	c.Advance(2 * time.Hour)
	if n, err := q.PruneHistory(10); err != nil || n != 2 {
		t.Errorf("PruneHistory = %d, %v; want the 2 sound records past their retention", n, err)
	}

	named := func(who string, problems []error) {
		t.Helper()
		all := fmt.Sprint(problems)
		for b, keys := range damaged {
			for _, k := range keys {
				if want := fmt.Sprintf("bucket %s: damaged key %x ", b, k); !strings.Contains(all, want) {
					t.Errorf("%s does not name %q; it found %v", who, want, problems)
				}
			}
		}
	}
	named("Check", q.Check())
	q.Close()
	problems, err := CheckFile(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	named("CheckFile", problems)

	for _, b := range []string{string(bucketSchedule)} {
		for _, k := range timeKeys {
			line := fmt.Sprintf("bucket=%s key=%x\n", b, k)
			if n := strings.Count(log.String(), line); n != 1 {
				t.Errorf("damaged key %x of %s logged %d times, want once", k, b, n)
			}
		}
	}
}

// corrupt changes the closed queue file at path with bbolt directly, as
// damage to the disk would.
func corrupt(t *testing.T, path string, change func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(change); err != nil {
		t.Fatal(err)
	}
}
