package queue

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestLeaseWritesNothingToTheFile(t *testing.T) {
	q, _ := openTest(t, Options{})
	put(t, q, "x\r\n", "a@x.org")
	before := q.Stats().Commits
	l := leaseOne(t, q)
	if err := q.Release(l); err != nil {
		t.Fatal(err)
	}
	leaseOne(t, q)
	if got := q.Stats().Commits - before; got != 0 {
		t.Fatalf("lease, release and lease again made %d commits, want 0", got)
	}
}

func TestLeasedMessageShowsActiveAndRefusesOperatorChanges(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := put(t, q, "x\r\n", "a@x.org")
	l := leaseOne(t, q)
	m, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.State() != StateActive {
		t.Fatalf("leased message state %v, want active", m.State())
	}
	for name, op := range map[string]func([]string) ([]IDResult, error){"hold": q.Hold, "delete": q.Delete, "expire": q.Expire} {
		res, err := op([]string{id})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(res[0].Err, ErrLeased) {
			t.Errorf("%s of a leased message: %v, want ErrLeased", name, res[0].Err)
		}
	}
	if ls, _ := q.Lease(5); len(ls) != 0 {
		t.Fatalf("a leased message was leased again: %d", len(ls))
	}
	if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Delivered}}); err != nil {
		t.Fatal(err)
	}
}

func TestNextDueSkipsLeasedMessages(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now, LeaseTimeout: time.Minute})
	put(t, q, "x\r\n", "a@x.org")
	leaseOne(t, q)
	due, ok := q.NextDue()
	if !ok || !due.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("next due %v %v, want the lease's end %v", due, ok, clk.Now().Add(time.Minute))
	}
	clk.Advance(time.Second)
	put(t, q, "y\r\n", "b@x.org")
	due, _ = q.NextDue()
	if !due.Equal(clk.Now()) {
		t.Fatalf("next due %v, want the new message's %v", due, clk.Now())
	}
}

func TestScheduleEntryOfAMissingMessageDoesNotBlockOthers(t *testing.T) {
	q, _ := openTest(t, Options{})
	// A schedule entry whose message is gone, sorting before everything.
	stale := scheduleKey(time.Unix(1, 0), "0000000000000-gone")
	if err := q.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSchedule).Put(stale, nil) }); err != nil {
		t.Fatal(err)
	}
	id := put(t, q, "x\r\n", "a@x.org")
	l := leaseOne(t, q)
	if l.ID != id {
		t.Fatalf("leased %s, want %s", l.ID, id)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left bool
		_ = q.db.View(func(tx *bolt.Tx) error { left = tx.Bucket(bucketSchedule).Get(stale) != nil; return nil })
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stale schedule entry was not dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Delivered}}); err != nil {
		t.Fatal(err)
	}
}

// A file written when leases were stored in the records: the lease is
// dropped at Open and the message is due at its next attempt.
func TestStoredLeasesOfAnOlderFileAreCleared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := put(t, q, "x\r\n", "a@x.org")
	m, _ := q.Get(id)
	until := time.Now().Add(time.Hour)
	err = q.db.Update(func(tx *bolt.Tx) error {
		rec := map[string]any{}
		v := jsonRecord(t, tx.Bucket(bucketMessages).Get([]byte(id))) // the layout of the time
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		rec["leased_until"], rec["lease_token"] = until, 7
		v, _ = json.Marshal(rec)
		if err := tx.Bucket(bucketMessages).Put([]byte(id), v); err != nil {
			return err
		}
		sched := tx.Bucket(bucketSchedule)
		if err := sched.Delete(scheduleKey(m.NextAttempt, id)); err != nil {
			return err
		}
		if err := sched.Put(scheduleKey(until, id), nil); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keyLeases)
	})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	q, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if p := q.Check(); len(p) != 0 {
		t.Fatal(p)
	}
	if l := leaseOne(t, q); l.ID != id {
		t.Fatalf("leased %s, want %s", l.ID, id)
	}
}
