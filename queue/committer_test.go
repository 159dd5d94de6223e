package queue

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// holdCommitter keeps the committer's loop inside a write transaction
// until the returned function is called, which waits for that commit.
func holdCommitter(t *testing.T, q *Queue) (release func()) {
	t.Helper()
	inside, hold := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- q.commit.commit(func(*bolt.Tx) error {
			close(inside)
			<-hold
			return nil
		})
	}()
	<-inside
	return func() {
		close(hold)
		if err := <-done; err != nil {
			t.Errorf("held commit: %v", err)
		}
	}
}

// waitQueued waits until n changes wait in the committer's queue.
func waitQueued(t *testing.T, q *Queue, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(q.commit.queue) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes queued, want %d", len(q.commit.queue), n)
		}
	}
}

// A lease queued while a commit is in progress runs as soon as that commit
// ends, on what it committed, ahead of the changes queued before it (which
// would otherwise keep it waiting for one more commit); a plain read still
// sees every change queued before it.
func TestLeaseRunsAheadOfQueuedWrites(t *testing.T) {
	q, _ := openTest(t, Options{})
	first := put(t, q, "x\r\n", "a@x.org")
	release := holdCommitter(t, q)

	putDone := make(chan string, 1)
	go func() {
		id, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, []byte("y\r\n"))
		if err != nil {
			t.Error(err)
		}
		putDone <- id
	}()
	waitQueued(t, q, 1)
	type leased struct {
		ids []string
		err error
	}
	leaseDone := make(chan leased, 1)
	go func() {
		ls, err := q.Lease(10)
		var ids []string
		for _, l := range ls {
			ids = append(ids, l.ID)
		}
		leaseDone <- leased{ids, err}
	}()
	waitQueued(t, q, 2)
	readDone := make(chan bool, 1)
	go func() {
		seen := false
		err := q.commit.read(func(tx *bolt.Tx) error {
			seen = tx.Bucket(bucketMessages).Stats().KeyN == 2
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		readDone <- seen
	}()
	waitQueued(t, q, 3)
	release()

	got := <-leaseDone
	second := <-putDone
	if got.err != nil {
		t.Fatal(got.err)
	}
	if len(got.ids) != 1 || got.ids[0] != first {
		t.Fatalf("lease queued behind the put of %s took %v, want only %s (committed before)", second, got.ids, first)
	}
	if !<-readDone {
		t.Fatal("a read queued after a put did not see it")
	}
	l := leaseOne(t, q)
	if l.ID != second {
		t.Fatalf("next lease %s, want %s", l.ID, second)
	}
}

// Every commit wakes delivery before its caller is answered, whatever the
// change: a waiting worker need not wait for the caller to be scheduled.
func TestEveryCommitWakesDelivery(t *testing.T) {
	q, _ := openTest(t, Options{})
	changed := q.Changed()
	if err := q.commit.commit(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("a commit returned without waking delivery")
	}
	changed = q.Changed()
	if err := q.commit.read(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatal("a read woke delivery: it changes nothing")
	default:
	}
}

// lingerTest is a committer whose loop does not run, for calling linger
// by hand: it lingers for an hour, so only what is queued ends it.
func lingerTest() *committer {
	return &committer{queue: make(chan change, 8), maxBatch: 8, stop: make(chan struct{}), lingerMax: time.Hour}
}

func kinds(batch []change) []string {
	var out []string
	for _, ch := range batch {
		switch {
		case ch.read:
			out = append(out, "read")
		case ch.outcome:
			out = append(out, "outcome")
		default:
			out = append(out, "put")
		}
	}
	return out
}

// While intake is busy, a batch of attempts' outcomes alone waits for a
// change somebody waits for and shares its commit; when intake is quiet,
// or the batch has such a change already, it goes at once.
func TestLingerOutcomesForIntake(t *testing.T) {
	outcome := change{outcome: true}
	put := change{}

	c := lingerTest()
	c.lastWaited = time.Now()
	c.queue <- outcome
	c.queue <- put
	got := kinds(c.linger([]change{outcome}))
	if want := []string{"outcome", "outcome", "put"}; !slices.Equal(got, want) {
		t.Errorf("busy intake: batch %v, want %v", got, want)
	}

	c = lingerTest() // lastWaited zero: no Put for ever
	c.queue <- put
	if got := kinds(c.linger([]change{outcome})); !slices.Equal(got, []string{"outcome"}) || len(c.queue) != 1 {
		t.Errorf("quiet intake: batch %v (%d left queued), want the outcome alone at once", got, len(c.queue))
	}

	c = lingerTest()
	c.queue <- outcome
	before := time.Now()
	if got := kinds(c.linger([]change{put, outcome})); !slices.Equal(got, []string{"put", "outcome"}) || len(c.queue) != 1 {
		t.Errorf("batch with a put: %v (%d left queued), want it as it was, at once", got, len(c.queue))
	}
	if c.lastWaited.Before(before) {
		t.Error("a batch with a put did not count as busy intake")
	}
}

// A read queued while outcomes linger ends the wait; reads queued with
// them ran first.
func TestLingerEndsForARead(t *testing.T) {
	q, _ := openTest(t, Options{})
	ahead := change{fn: func(*bolt.Tx) error { return nil }, done: make(chan error, 1), read: true, ahead: true}
	c2 := &committer{db: q.db, queue: make(chan change, 8), maxBatch: 8, stop: make(chan struct{}), lingerMax: time.Hour, lastWaited: time.Now()}
	c2.queue <- change{read: true}
	got := kinds(c2.linger([]change{{outcome: true}, ahead}))
	if want := []string{"outcome", "read"}; !slices.Equal(got, want) {
		t.Errorf("batch %v, want %v", got, want)
	}
	select {
	case err := <-ahead.done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the read queued with the outcome did not run before the wait")
	}
}

// TestFullBatchRefusesTheRestAfterOneFails: a batch whose commit fails for
// lack of room is tried change by change, the spare ones first, and once
// one of the others fails for lack of room the rest are refused with
// ErrFull at once. Every failed commit makes bbolt read the whole file
// (NoFreelistSync), so ten Puts that cannot fit cost two readings, not
// eleven as when each was tried alone; the spare change, which fits, is
// committed.
func TestFullBatchRefusesTheRestAfterOneFails(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "q.db"), 0o600, &bolt.Options{
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType, MaxSize: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A first commit, so that the file says its free-page list is not
	// saved (a new file's is), as a queue's does after its first commit.
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("b"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c := newCommitter(db, 64, nil, nil, nil)
	defer c.close()
	large := make([]byte, 2<<20) // never fits under the 1 MiB cap
	put := func(key string, value []byte) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("b")).Put([]byte(key), value)
		}
	}
	var batch []change
	for i := range 10 {
		batch = append(batch, change{fn: put(fmt.Sprint("large", i), large), done: make(chan error, 1)})
	}
	batch = append(batch, change{fn: put("small", []byte("x")), done: make(chan error, 1), spare: true})
	walks := db.Stats().TxN
	c.write(batch) // as the loop does; the loop itself is idle
	for i, ch := range batch {
		err := <-ch.done
		if ch.spare && err != nil {
			t.Errorf("the spare change: %v, want it committed", err)
		}
		if !ch.spare && !errors.Is(err, ErrFull) {
			t.Errorf("change %d: %v, want ErrFull", i, err)
		}
	}
	if got := db.Stats().TxN - walks; got > 2 {
		t.Errorf("bbolt read the whole file %d times for one batch that did not fit, want at most 2", got)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("b")); b == nil || b.Get([]byte("small")) == nil {
			return errors.New("the spare change is not in the file")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
