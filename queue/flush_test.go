package queue

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestFlushMovesScheduleKeysOnly: RetryAll, two schedule entries a commit
// here, makes every message due now that is neither held nor leased, and
// says how many are due (the one due already included). No record is
// rewritten, yet each reads as Retry would have left it (due now, its
// recipient too), is leased at once in ID order, and the file checks
// clean; once its record is written again (an attempt deferred it) or it
// left the queue, the note of the flush is gone. After a reopen all of it
// holds.
func TestFlushMovesScheduleKeysOnly(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 8 {
		ids = append(ids, put(t, q, "x\r\n", string(rune('a'+i))+"@x.org"))
	}
	ls, err := q.Lease(8)
	if err != nil || len(ls) != 8 {
		t.Fatal(len(ls), err)
	}
	for i, l := range ls[:7] { // deferred by 1h, 2h…; the last one stays leased
		next := clk.Now().Add(time.Duration(7-i) * time.Hour)
		if _, err := q.Record(l, []Outcome{{Address: l.Recipients[0].Address, Result: Deferred, Reply: reply451, NextAttempt: next}}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Minute)
	if err := one(t, q.Hold, ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := one(t, q.Retry, ids[2]); err != nil { // due already
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	before := records(t, q)

	due, err := q.retryAll(2)
	if err != nil || due != 6 {
		t.Fatalf("RetryAll: %d due, %v; want 6 (8 less the held and the leased one)", due, err)
	}
	for id, rec := range records(t, q) {
		if !bytes.Equal(rec, before[id]) && id != ids[2] {
			t.Errorf("record of %s rewritten by the flush", id)
		}
	}
	for _, id := range []string{ids[0], ids[3], ids[6]} {
		m, err := q.Get(id)
		if err != nil || !m.NextAttempt.Equal(clk.Now()) || !m.Recipients[0].NextAttempt.Equal(clk.Now()) {
			t.Errorf("%s after the flush: due %v, recipient %v (%v); want both now, %v", id, m.NextAttempt, m.Recipients[0].NextAttempt, err, clk.Now())
		}
	}
	if problems := q.Check(); len(problems) > 0 {
		t.Fatalf("check after the flush: %v", problems)
	}

	got, err := q.Lease(10)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ids[2], ids[0], ids[3], ids[4], ids[5], ids[6]}
	if leased := leasedIDs(got); !slices.Equal(leased, want) {
		t.Fatalf("leased %v after the flush; want %v (due already, then the flushed in ID order)", leased, want)
	}
	// One deferred again, one delivered, the rest given back.
	if _, err := q.Record(got[1], []Outcome{{Address: got[1].Recipients[0].Address, Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Record(got[2], []Outcome{{Address: got[2].Recipients[0].Address, Result: Delivered}}); err != nil {
		t.Fatal(err)
	}
	for _, l := range got[3:] {
		if err := q.Release(l); err != nil {
			t.Fatal(err)
		}
	}
	notes := flushNotes(t, q)
	if slices.Contains(notes, ids[0]) || slices.Contains(notes, ids[3]) || !slices.Contains(notes, ids[4]) {
		t.Errorf("flush notes %v; want none for %s (written again) nor %s (gone), one for %s", notes, ids[0], ids[3], ids[4])
	}
	if m, _ := q.Get(ids[0]); !m.NextAttempt.Equal(clk.Now().Add(time.Hour)) {
		t.Errorf("%s deferred after the flush: due %v, want in an hour", ids[0], m.NextAttempt)
	}
	if problems := q.Check(); len(problems) > 0 {
		t.Fatalf("check after delivery: %v", problems)
	}

	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openAt(t, path, Options{Now: clk.Now})
	// The one leased during the flush is due again (leases live in memory).
	want = []string{ids[7], ids[2], ids[4], ids[5], ids[6]}
	if got, err := q.Lease(10); err != nil || !slices.Equal(leasedIDs(got), want) {
		t.Fatalf("after a reopen leased %v (%v); want %v", leasedIDs(got), err, want)
	}
}

func records(t *testing.T, q *Queue) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	_ = q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	return out
}

func flushNotes(t *testing.T, q *Queue) []string {
	t.Helper()
	var ids []string
	_ = q.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketFlushed); b != nil {
			return b.ForEach(func(k, _ []byte) error {
				ids = append(ids, string(k))
				return nil
			})
		}
		return nil
	})
	return ids
}

func leasedIDs(ls []*Lease) []string {
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	return ids
}
