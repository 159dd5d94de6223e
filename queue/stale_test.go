package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"relayq/smallfs"
)

// TestStaleScheduleDropBacksOff: schedule entries whose message is
// missing are dropped by Lease in a commit of their own. When that commit
// kept failing (here: a full disk), NextDue reported the entries due in
// the past and every Lease tried the drop again, so the delivery loop woke
// every 5 ms to a failing commit: a busy loop on a store error. Now the
// entries wait out a backoff (1s, doubling) between tries, NextDue says
// when the next try is, and once the disk has room the drop succeeds.
func TestStaleScheduleDropBacksOff(t *testing.T) {
	dir := smallfs.Mount(t, "8m")
	c := newClock()
	var log logBuffer
	q := openAt(t, filepath.Join(dir, "queue.db"), Options{Now: c.Now, Logger: log.logger()})
	var ids []string
	for i := range 1000 {
		ids = append(ids, put(t, q, "x\r\n", fmt.Sprintf("r%d@x.org", i)))
	}
	// Every other message loses its record and body, as damage would:
	// their schedule entries, spread over every page of the schedule,
	// are stale, and dropping them rewrites each of those pages.
	if err := q.commit.commit(func(tx *bolt.Tx) error {
		for i := 0; i < len(ids); i += 2 {
			if err := tx.Bucket(bucketMessages).Delete([]byte(ids[i])); err != nil {
				return err
			}
			if err := deleteBody(tx, ids[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	smallfs.Fill(t, filler)
	// Use up the free pages inside the file as well, so that the drop
	// needs pages the disk has no room for.
	for {
		if _, err := q.Put(t.Context(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, []byte("x\r\n")); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			break
		}
	}

	tries := func() int { return strings.Count(log.String(), "schedule entries of missing messages") }
	waitTries := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); tries() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d tries to drop the stale entries, want %d; log:\n%s", tries(), n, log.String())
			}
		}
	}
	if _, err := q.Lease(5000); err != nil {
		t.Fatal(err)
	}
	waitTries(1)
	if !strings.Contains(log.String(), "cannot drop schedule entries") {
		t.Fatalf("the drop did not fail; the disk is not full enough for this test. log:\n%s", log.String())
	}

	// Delivery's loop, for a second: it sleeps until NextDue (at least
	// 5 ms) and leases again. The drop must not be tried at each turn.
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if due, ok := q.NextDue(); ok && !due.After(c.Now()) {
			t.Fatalf("NextDue = %v, now %v: delivery is woken at once, for entries it cannot take", due, c.Now())
		}
		if ls, err := q.Lease(10); err != nil || len(ls) != 0 {
			t.Fatalf("Lease = %d, %v; want nothing", len(ls), err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := tries(); n != 1 {
		t.Fatalf("the failing drop was tried %d times in a second, want once (then after its backoff)", n)
	}

	// The backoff runs out: one more try, which fails, then twice as long.
	c.Advance(time.Second)
	if due, ok := q.NextDue(); !ok || due.After(c.Now()) {
		t.Errorf("NextDue = %v, %v; want the retry, due now (%v)", due, ok, c.Now())
	}
	q.Lease(10)
	waitTries(2)
	c.Advance(time.Second)
	q.Lease(10)
	time.Sleep(50 * time.Millisecond)
	if n := tries(); n != 2 {
		t.Fatalf("%d tries; the second backoff (2s) was not kept", n)
	}

	// Room again: the next try succeeds and the entries are gone.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	q.Lease(10)
	waitTries(3)
	if !strings.Contains(log.String(), "dropped schedule entries of missing messages") {
		t.Fatalf("the drop failed with room on the disk; log:\n%s", log.String())
	}
	q.stale.mu.Lock()
	n := len(q.stale.keys)
	q.stale.mu.Unlock()
	if n != 0 {
		t.Errorf("%d dropped entries still remembered", n)
	}
	// The cleanup check finds no stale schedule entry.
}
