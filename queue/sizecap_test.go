package queue

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// fileWalks counts the walks of the whole file bbolt has made since
// Open: each begins a read transaction (bbolt v1.5.0 DB.freepages, when
// a failed commit is rolled back). Other reads count too: the caller
// stops the store's background loops first (quietStore) and runs none.
func fileWalks(q *Queue) int { return q.db.Stats().TxN }

// quietStore stops the store's background loops (Close stops them again),
// so that no read transaction begins but the test's own.
func quietStore(q *Queue) {
	for _, b := range []*background{q.walker, q.pruner, q.trimmer, q.giver, q.auditor, q.spacer} {
		b.halt()
	}
}

// TestAtMaxSizePutIsRefusedWithoutReadingTheFile: once the queue file
// has reached Options.MaxSize, Put refuses with ErrFull without a
// commit (a commit that fails at the cap makes bbolt read every page of
// the file, holding the write lock: seconds at a million messages), and
// once deliveries have made room a Put goes through again. Before, every
// refused Put read the whole file.
func TestAtMaxSizePutIsRefusedWithoutReadingTheFile(t *testing.T) {
	q, _ := openTest(t, Options{MaxSize: 8 << 20})
	quietStore(q)
	body := bytes.Repeat([]byte("x"), 2000)
	putOne := func() error {
		_, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, body)
		return err
	}
	walks := fileWalks(q)
	n := 0
	for ; ; n++ {
		err := putOne()
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 1000 {
		t.Fatalf("only %d messages of 2 KB fit in 8 MiB", n)
	}
	filling := fileWalks(q) - walks
	walks = fileWalks(q)
	for i := range 20 {
		if err := putOne(); !errors.Is(err, ErrFull) {
			t.Fatalf("put %d at the cap: %v, want ErrFull", i, err)
		}
	}
	if got := fileWalks(q) - walks; got != 0 || filling > 1 {
		t.Fatalf("%d messages queued up to the cap; bbolt read the whole file %d times while filling, %d times for 20 puts refused at the cap; want at most once, then never", n, filling, got)
	}
	ls, err := q.Lease(200)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if _, err := q.Record(l, delivered(l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Room(); err != nil {
		t.Errorf("Room after %d deliveries: %v", len(ls), err)
	}
	if err := putOne(); err != nil {
		t.Fatalf("put after %d deliveries: %v", len(ls), err)
	}
}

// TestGrowRoom: the room past the high-water mark, as bbolt v1.5.0's
// DB.allocate allows it under MaxSize (4 KiB pages, 16 MiB AllocSize).
func TestGrowRoom(t *testing.T) {
	const page, alloc = 4096, 16 << 20
	for _, c := range []struct {
		limit, high, want int64
	}{
		{0, 0, 0}, // no cap
		{1 << 20, 64 << 10, 1<<20 - 64<<10 - page},           // small file: it grows to the next power of two up to the cap
		{3 << 20, 64 << 10, 2<<20 - 64<<10 - page},           // … which is 2 MiB under a 3 MiB cap
		{1 << 20, 1 << 20, 0},                                // at the cap
		{8 << 20, 9 << 20, 0},                                // past it
		{1 << 30, 100 << 20, 1<<30 - alloc - 100<<20 - page}, // large: it grows by AllocSize past what it needs
		{20 << 20, 1 << 20, 16<<20 - 1<<20 - page},           // between: a power of two up to AllocSize
	} {
		if got := growRoom(c.limit, c.high, page, alloc); got != c.want {
			t.Errorf("growRoom(limit %d, high %d) = %d, want %d", c.limit, c.high, got, c.want)
		}
	}
}

// TestRefusedChangeReadsNoFile: a change that the store refuses inside its
// transaction (here, recording an attempt of a lease that has ended) rolls
// back without bbolt reading the file: bbolt v1.5.0's Update undoes a
// function's error without rebuilding its free-page list, unlike a commit
// that fails (above), and unlike bbolt before 1.3.7.
func TestRefusedChangeReadsNoFile(t *testing.T) {
	q, _ := openTest(t, Options{})
	quietStore(q)
	for range 50 {
		put(t, q, "body\r\n", "a@example.org")
	}
	l := leaseOne(t, q)
	if _, err := q.Record(l, delivered(l)); err != nil {
		t.Fatal(err)
	}
	walks := fileWalks(q)
	if _, err := q.Record(l, delivered(l)); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("second record of one lease: %v, want ErrLeaseLost", err)
	}
	if got := fileWalks(q) - walks; got != 0 {
		t.Fatalf("a refused record read the whole file %d times", got)
	}
}
