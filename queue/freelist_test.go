package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestFreelistSavedAtClose: Close leaves bbolt's freelist in the file, so
// that the next Open reads it instead of walking every page; the first
// commit after Open drops it again (a crash from then on leaves a file that
// Open walks first). The file stays sound through it all: bbolt's check
// finds no page both in use and free, and none lost, after messages came
// and went across two such opens.
func TestFreelistSavedAtClose(t *testing.T) {
	path, _ := fill(t, 40) // closed: the freelist is saved
	if !freelistSaved(path) {
		t.Fatal("no freelist saved at Close")
	}
	for round := range 2 {
		q, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if freelistSaved(path) {
			t.Error("the freelist is still in the file after Open's first commit: a crash would leave a stale one")
		}
		if q.pages.wait() != nil {
			t.Fatal(q.pages.err)
		}
		ids := make([]string, 0, 20)
		for range 20 {
			id, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@y.org"}}, []byte("round\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if _, err := q.Delete(ids[:10+round*5]); err != nil {
			t.Fatal(err)
		}
		leases, err := q.Lease(5)
		if err != nil || len(leases) != 5 {
			t.Fatalf("Lease after an Open that read the saved freelist: %d, %v", len(leases), err)
		}
		for _, l := range leases {
			if _, err := q.Record(l, []Outcome{{Address: l.Recipients[0].Address, Result: Delivered}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if !freelistSaved(path) {
			t.Fatal("no freelist saved at Close")
		}
		if problems, err := CheckFile(path, time.Second); err != nil || len(problems) > 0 {
			t.Fatalf("round %d: check after Close: %v %v", round, problems, err)
		}
	}
}

// TestOpenWithoutSavedFreelist: a file left without a saved freelist (the
// process was killed) is walked before it is opened, as always: Open
// needs no walk after it, and the messages are all there.
func TestOpenWithoutSavedFreelist(t *testing.T) {
	path, bodies := fill(t, 12)
	forgetFreelist(t, path)
	if freelistSaved(path) {
		t.Fatal("freelist still saved")
	}
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	select {
	case <-q.pages.done:
	default:
		t.Error("Open walked the file first, yet a walk after it is pending")
	}
	all, err := q.List()
	if err != nil || len(all) == 0 {
		t.Fatalf("List: %d, %v", len(all), err)
	}
	for _, m := range all {
		if _, ok := bodies[m.ID]; !ok {
			t.Errorf("message %s was not put", m.ID)
		}
	}
}

// forgetFreelist leaves the file at path as a kill -9 would: the last
// commit wrote no freelist, so the next Open has to rebuild it.
func forgetFreelist(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// openedDamaged checks a store opened on a damaged file without a walk
// first: the walk after Open reports the damage on Damaged, Lease refuses
// with ErrDamaged instead of reading the damaged page, and Close leaves no
// freelist, so that the next Open walks the file and refuses it at once.
func openedDamaged(t *testing.T, q *Queue, path string) {
	t.Helper()
	select {
	case err := <-q.Damaged():
		if !errors.Is(err, ErrDamaged) {
			t.Errorf("Damaged: %v, want ErrDamaged", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the walk after Open found no damage")
	}
	if _, err := q.Lease(10); !errors.Is(err, ErrDamaged) {
		t.Errorf("Lease on a damaged file: %v, want ErrDamaged", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if freelistSaved(path) {
		t.Error("Close saved the freelist of a damaged file")
	}
	if q, err := Open(path, Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrDamaged) {
		if q != nil {
			q.Close()
		}
		t.Fatalf("second Open of a damaged file: %v, want ErrDamaged", err)
	}
}
