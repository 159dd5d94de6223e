package queue

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// summarizeRecords is what Summarize used to do, reading every record:
// the tests compare the two.
func (q *Queue) summarizeRecords(deadSince time.Time) (Summary, error) {
	var s Summary
	err := q.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
			m, err := decodeMessage(v)
			if err != nil {
				s.Damaged++ // counted, not fatal: `queue check` says more
				return nil
			}
			s.add(q.leasedUntil(m))
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			s.Dead++
			d, err := decodeDead(v)
			if err != nil {
				s.DamagedDead++
				return nil
			}
			if !d.Died.Before(deadSince) {
				s.DeadSince++
			}
			return nil
		})
	})
	return s, err
}

func (s *Summary) add(m *Message) {
	switch m.State() {
	case StateQueued:
		s.Queued++
	case StateDeferred:
		s.Deferred++
	case StateHeld:
		s.Held++
	case StateActive:
		s.Active++
	case StateUncertain:
		s.Uncertain++
	}
	for _, r := range m.Recipients {
		if r.Status.Pending() {
			s.Pending++
		}
	}
	s.Bytes += m.Size
	if s.Oldest.IsZero() || m.Created.Before(s.Oldest) {
		s.Oldest = m.Created
	}
	if !m.Held && m.tried() {
		if start := m.LifetimeStart(); s.OldestDeferred.IsZero() || start.Before(s.OldestDeferred) {
			s.OldestDeferred = start
		}
	}
}

// sameSummary fails the test when Summarize (the counters) and
// summarizeRecords (every record read) disagree.
func sameSummary(t *testing.T, q *Queue, step string, deadSince time.Time) Summary {
	t.Helper()
	got, err := q.Summarize(deadSince)
	if err != nil {
		t.Fatalf("%s: Summarize: %v", step, err)
	}
	want, err := q.summarizeRecords(deadSince)
	if err != nil {
		t.Fatalf("%s: summarizeRecords: %v", step, err)
	}
	got.FileSize, got.DamageAudited = 0, false
	g, w := got, want
	g.Oldest, g.OldestDeferred, w.Oldest, w.OldestDeferred = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if g != w || !got.Oldest.Equal(want.Oldest) || !got.OldestDeferred.Equal(want.OldestDeferred) {
		t.Errorf("%s: counters say\n%+v\nthe records say\n%+v", step, got, want)
	}
	return got
}

// TestCountersFollowEveryChange: each way a message or dead letter
// changes (put, delivery, deferral, uncertain, hold, release, retry, dead
// letter, expire, delete, requeue, purge, a lease) leaves the counters
// where reading every record puts them, and Check finds them sound.
func TestCountersFollowEveryChange(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	day := func() time.Time { return clk.Now().Add(-24 * time.Hour) }
	sameSummary(t, q, "empty", day())
	a := put(t, q, "a\r\n", "a1@x.org", "a2@x.org")
	b := put(t, q, "bb\r\n", "b@x.org")
	c := put(t, q, "ccc\r\n", "c@x.org")
	clk.Advance(time.Minute)
	sameSummary(t, q, "three queued", day())

	l := leaseOne(t, q) // a
	if s := sameSummary(t, q, "one leased", day()); s.Active != 1 {
		t.Errorf("leased: %+v, want 1 active", s)
	}
	if _, err := q.Record(l, []Outcome{{Address: "a1@x.org", Result: Delivered},
		{Address: "a2@x.org", Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if s := sameSummary(t, q, "a deferred", day()); s.Deferred != 1 || s.Pending != 3 || s.OldestDeferred.IsZero() {
		t.Errorf("after a deferral: %+v", s)
	}
	l = leaseOne(t, q) // b
	if _, err := q.Record(l, []Outcome{{Address: "b@x.org", Result: Deferred, Uncertain: true, Reply: reply451, NextAttempt: clk.Now()}}); err != nil {
		t.Fatal(err)
	}
	sameSummary(t, q, "b uncertain", day())
	if err := one(t, q.Hold, c); err != nil {
		t.Fatal(err)
	}
	sameSummary(t, q, "c held", day())
	if err := one(t, q.Hold, a); err != nil {
		t.Fatal(err)
	}
	sameSummary(t, q, "a held", day())
	if err := one(t, q.Unhold, a); err != nil {
		t.Fatal(err)
	}
	if err := one(t, q.Retry, a); err != nil {
		t.Fatal(err)
	}
	sameSummary(t, q, "a released and retried", day())

	l = leaseOne(t, q) // a (due now)
	if _, err := q.Record(l, []Outcome{{Address: "a2@x.org", Result: Failed, Reply: reply550}}); err != nil {
		t.Fatal(err)
	}
	if s := sameSummary(t, q, "a dead", day()); s.Dead != 1 || s.DeadSince != 1 {
		t.Errorf("after a dead letter: %+v", s)
	}
	if res, err := q.Requeue([]string{a}, ReplyClass{}); err != nil || res[0].Err != nil {
		t.Fatalf("Requeue: %v %v", res, err)
	}
	if s := sameSummary(t, q, "a requeued", day()); s.Dead != 0 {
		t.Errorf("after requeue: %+v", s)
	}
	if err := one(t, q.Expire, a); err != nil {
		t.Fatal(err)
	}
	sameSummary(t, q, "a expired", day())
	if err := one(t, q.Delete, b); err != nil {
		t.Fatal(err)
	}
	sameSummary(t, q, "b deleted", day())
	clk.Advance(25 * time.Hour)
	if s := sameSummary(t, q, "a day later", day()); s.Dead != 1 || s.DeadSince != 0 {
		t.Errorf("a day later: %+v", s)
	}
	if _, err := q.PurgeDead(0); err != nil {
		t.Fatal(err)
	}
	if err := one(t, q.Delete, c); err != nil {
		t.Fatal(err)
	}
	if s := sameSummary(t, q, "empty again", day()); s != (Summary{DamageAudited: s.DamageAudited, FileSize: s.FileSize}) {
		t.Errorf("empty again: %+v", s)
	}
}

// TestCountersBuiltOnceForAnOlderFile: a file written before the
// counters (none in it) gets them at Open, from its records, damaged ones
// included; Check finds them sound, and a counter changed behind the
// store's back is named by Check.
func TestCountersBuiltOnceForAnOlderFile(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		put(t, q, "x\r\n", fmt.Sprintf("r%d@x.org", i))
	}
	fail(t, q, reply550, "r0@x.org")
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{{Address: "r1@x.org", Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	want := sameSummary(t, q, "before", time.Time{})
	err = q.db.Update(func(tx *bolt.Tx) error {
		for _, name := range counterBuckets {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyCounts)
	})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()

	q = openAt(t, path, Options{Now: clk.Now})
	if got := sameSummary(t, q, "rebuilt", time.Time{}); got.Queued != want.Queued || got.Deferred != 1 || got.Dead != 1 {
		t.Errorf("rebuilt: %+v, want %+v", got, want)
	}
	err = q.db.Update(func(tx *bolt.Tx) error {
		c, err := readCounts(tx)
		if err != nil {
			return err
		}
		c.states[tallyQueued]++
		return writeCounts(tx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := q.Check(); len(p) != 1 || !strings.Contains(p[0].Error(), "counters: the sums are") {
		t.Errorf("Check of a wrong counter: %v", p)
	}
	err = q.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyCounts) })
	if err != nil {
		t.Fatal(err)
	}
	if err := buildCounters(q.db.raw()); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSummarize10k: what `relayq status` costs the store with 10,000
// messages queued, a tenth of them deferred and a few dead; its allocs/op
// do not grow with the queue (they did: one decoded record each).
func BenchmarkSummarize10k(b *testing.B) {
	clk := newClock()
	q, _ := openTest(b, Options{Now: clk.Now, MaxBatch: 1000})
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := range 200 {
				if _, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{fmt.Sprintf("r%d-%d@x.org", w, i)}}, []byte("x\r\n")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ls, err := q.Lease(1000)
	if err != nil {
		b.Fatal(err)
	}
	for i, l := range ls {
		o := Outcome{Address: l.Message.Recipients[0].Address, Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)}
		if i%100 == 0 {
			o = Outcome{Address: o.Address, Result: Failed, Reply: reply550}
		}
		if _, err := q.Record(l, []Outcome{o}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := q.Summarize(clk.Now().Add(-24 * time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
}

// messageTallies counts the per-message tallies a file of format 2 kept;
// index says whether it has the archive's time index of format 2.
func messageTallies(t *testing.T, db *bolt.DB) (n int, version string, index bool) {
	t.Helper()
	err := db.View(func(tx *bolt.Tx) error {
		version = string(tx.Bucket(bucketMeta).Get(keyVersion))
		index = tx.Bucket(bucketArchiveTime) != nil
		c := tx.Bucket(bucketTally).Cursor()
		for k, _ := c.Seek([]byte{'m'}); k != nil && k[0] == 'm'; k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, version, index
}

// TestTallyLayoutFileStillDelivered opens a queue file written by relayq
// before format 3, with a tally per message (main at 92862f6;
// testdata/tally-layout.db.gz, made with a fixed clock of 2026-12-07
// 09:00 UTC): seven messages, one deferred, one uncertain, one held, one
// with a recipient dead (its dead letter), one delivered and one still
// to try, one with a 300 KB body, three queued. Open drops the tallies
// and the archive's time index and marks the file version 3; the counts read as the older relayq left
// them, Check passes, and every message is delivered, after which the
// counts are empty.
func TestTallyLayoutFileStillDelivered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	gunzip(t, "testdata/tally-layout.db.gz", path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, v, index := messageTallies(t, db); n != 7 || v != "2" || !index {
		t.Fatalf("the old file has %d message tallies, version %q, time index %v; want 7, 2, true", n, v, index)
	}
	db.Close()
	// Checked before a relayq of format 3 opened it, the file is sound.
	if problems, err := CheckFile(path, time.Second); err != nil || len(problems) != 0 {
		t.Errorf("CheckFile of the old file = %v, %v", problems, err)
	}

	q := openAt(t, path, Options{})
	if n, v, index := messageTallies(t, q.db.raw()); n != 0 || v != "3" || index {
		t.Errorf("after Open: %d message tallies, version %q, time index %v; want 0, 3, false", n, v, index)
	}
	if p := q.Check(); len(p) != 0 {
		t.Errorf("Check = %v", p)
	}
	stray := func(put bool) error {
		return q.db.Update(func(tx *bolt.Tx) error {
			if put {
				return tx.Bucket(bucketTally).Put(tallyKey('m', "1HVQD3AGP78000MP8070"), make([]byte, 25))
			}
			return tx.Bucket(bucketTally).Delete(tallyKey('m', "1HVQD3AGP78000MP8070"))
		})
	}
	if err := stray(true); err != nil {
		t.Fatal(err)
	}
	if p := q.Check(); len(p) != 1 || !strings.Contains(p[0].Error(), "1 per-message tallies left") {
		t.Errorf("Check with a per-message tally in a file of format 3 = %v", p)
	}
	if err := stray(false); err != nil {
		t.Fatal(err)
	}
	s, err := q.Summarize(time.Time{})
	if err != nil || s.Queued != 4 || s.Deferred != 1 || s.Uncertain != 1 || s.Held != 1 || s.Pending != 8 || s.Bytes != 309720 || s.Dead != 1 {
		t.Errorf("Summarize = %+v, %v; want what the older relayq counted", s, err)
	}
	var held string
	msgs, _ := q.List()
	for _, m := range msgs {
		if m.Held {
			held = m.ID
		}
	}
	if err := one(t, q.Unhold, held); err != nil {
		t.Fatal(err)
	}
	if err := one(t, q.Retry, held); err != nil { // the deferred ones are due in an hour
		t.Fatal(err)
	}
	if _, err := q.RetryAll(); err != nil {
		t.Fatal(err)
	}
	leases, err := q.Lease(10)
	if err != nil || len(leases) != 7 {
		t.Fatalf("Lease = %d, %v; want 7", len(leases), err)
	}
	for _, l := range leases {
		if err := q.VerifyBody(l.Message); err != nil {
			t.Error(err)
		}
		var outcomes []Outcome
		for _, r := range l.Pending() {
			outcomes = append(outcomes, Outcome{Address: r.Address, Result: Delivered})
		}
		if _, err := q.Record(l, outcomes); err != nil {
			t.Fatal(err)
		}
	}
	s, err = q.Summarize(time.Time{})
	if err != nil || s.Queued+s.Deferred+s.Uncertain+s.Held+s.Active != 0 || s.Pending != 0 || s.Bytes != 0 || s.Dead != 1 {
		t.Errorf("after delivering every message: Summarize = %+v, %v", s, err)
	}
}

// TestFormatTwoLeftoversWaitForRoom: a file of format 2 opened on a disk
// too full to commit the deletion of its per-message tallies still opens
// and delivers (nothing reads them), and the next Open with room deletes
// them; a deletion failing for another reason still fails Open.
func TestFormatTwoLeftoversWaitForRoom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	gunzip(t, "testdata/tally-layout.db.gz", path)
	saved := formatTwoLeftovers
	defer func() { formatTwoLeftovers = saved }()
	failing := func(i int, err error) {
		formatTwoLeftovers = slices.Clone(saved)
		formatTwoLeftovers[i].fn = func(*bolt.DB) error { return err }
	}

	failing(0, fmt.Errorf("commit: %w", syscall.ENOSPC))
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open without room for the deletion: %v", err)
	}
	if n, v, _ := messageTallies(t, q.db.raw()); n != 7 || v != "3" {
		t.Errorf("after an Open without room: %d message tallies, version %q; want 7 left, 3", n, v)
	}
	if delivered := deliverAll(t, q); delivered == 0 {
		t.Error("nothing delivered from the file whose leftovers stayed")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	failing(1, errors.New("some other failure"))
	if q, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "some other failure") {
		t.Errorf("Open with a deletion failing for another reason = %v, want that error", err)
		if q != nil {
			q.Close()
		}
	}

	formatTwoLeftovers = saved
	q = openAt(t, path, Options{}) // checks the file when the test ends
	if n, _, _ := messageTallies(t, q.db.raw()); n != 0 {
		t.Errorf("after an Open with room: %d message tallies left, want 0", n)
	}
}
