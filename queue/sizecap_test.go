package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
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
// that fails (above), and unlike bbolt before 1.3.7. So does each chunk
// of a give-back pass (giveback.go), which rolls back on purpose.
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
	deliverAll(t, q) // its leases read
	walks = fileWalks(q)
	q.given.keep, q.given.min, q.given.chunk = 0, 0, 8
	for range 2 {
		if _, err := q.GiveBack(); err != nil {
			t.Fatal(err)
		}
	}
	if got := fileWalks(q) - walks; got != 0 || q.given.pagesRead == 0 {
		t.Fatalf("two give-back passes (%d pages looked at, %d a transaction) read the whole file %d times", q.given.pagesRead, q.given.chunk, got)
	}
}

// TestAtMaxSizeALargeBodyThatDidNotFitIsNotTriedAgain: in a file at its
// cap whose free pages are scattered (every other message delivered), a
// large body passes the estimate of the room but not the commit (its
// chunks need runs of free pages). That commit reads the file once; a
// body as large is then refused without a commit until deliveries make
// room, while a small message, once the hold has passed, still goes in.
func TestAtMaxSizeALargeBodyThatDidNotFitIsNotTriedAgain(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{MaxSize: 8 << 20, Now: clk.Now})
	quietStore(q)
	small := bytes.Repeat([]byte("x"), 2000)
	large := bytes.Repeat([]byte("y"), 256<<10)
	putBody := func(body []byte) error {
		_, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, body)
		return err
	}
	for {
		err := putBody(small)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ; i++ {
		ls, err := q.Lease(1)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) == 0 {
			break
		}
		if i%2 == 1 {
			continue // stays queued, leased
		}
		if _, err := q.Record(ls[0], delivered(ls[0])); err != nil {
			t.Fatal(err)
		}
	}
	if room := q.capRoom(exactRoom); room < 2*int64(len(large)) {
		t.Fatalf("only %d bytes of free pages after delivering half the queue", room)
	}
	walks := fileWalks(q)
	if err := putBody(large); !errors.Is(err, ErrFull) {
		t.Fatalf("large body into scattered free pages: %v, want ErrFull", err)
	}
	if got := fileWalks(q) - walks; got != 1 {
		t.Fatalf("the large body's commit read the file %d times; want once (a commit that failed)", got)
	}
	clk.Advance(time.Minute)
	for i := range 5 {
		if err := putBody(large); !errors.Is(err, ErrFull) {
			t.Fatalf("large body %d again: %v, want ErrFull", i, err)
		}
	}
	if got := fileWalks(q) - walks; got != 1 {
		t.Fatalf("5 more large bodies read the file %d more times; want none", got-1)
	}
	if err := putBody(small); err != nil {
		t.Fatalf("small message after the hold: %v", err)
	}
}

// BenchmarkCapAdmit: what the check at the cap costs each Put when
// Options.MaxSize is set (bbolt's stats, and its meta page read from the
// file); nothing without it.
func BenchmarkCapAdmit(b *testing.B) {
	for _, limit := range []int64{0, 1 << 30} {
		b.Run(fmt.Sprintf("max_size=%d", limit), func(b *testing.B) {
			q, _ := openTest(b, Options{MaxSize: limit})
			b.ReportAllocs()
			for b.Loop() {
				if err := q.cap.admit(5000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
