package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"relayq/smallfs"
)

// drainedQueue is a store that held n messages of 16 KiB and delivered
// all but every keepEvery-th: a file of mostly free pages.
//
// The store is not closed when the test ends: the test closes it.
func drainedQueue(t *testing.T, path string, n, keepEvery int) (*Queue, []string) {
	t.Helper()
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tomorrow := time.Now().Add(24 * time.Hour)
	body := strings.Repeat("0123456789abcdef", 1<<10)
	var kept []string
	for i := range n {
		id := put(t, q, body, fmt.Sprintf("r%d@example.org", i))
		if i%keepEvery == 0 {
			kept = append(kept, id)
		}
	}
	keep := make(map[string]bool)
	for _, id := range kept {
		keep[id] = true
	}
	for seen := 0; seen < n; {
		ls, err := q.Lease(100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) == 0 {
			t.Fatalf("%d of %d messages leased", seen, n)
		}
		for _, l := range ls {
			seen++
			if keep[l.Message.ID] {
				// Deferred a day: still queued, with an attempt on record.
				if _, err := q.Record(l, []Outcome{{Address: l.Pending()[0].Address, Result: Deferred, NextAttempt: tomorrow, Reply: &Reply{Code: 451, Lines: []string{"try later"}}}}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, err := q.Record(l, delivered(l)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return q, kept
}

// TestCompactWhileRunning: a queue of 3,000 messages of 16 KiB that has
// delivered all but 30 is compacted while it stays open: the file shrinks
// to what is in use, bbolt's freelist (what the free pages cost in
// memory) goes from thousands of pages to a handful, and nothing a user
// sees changes: the 30 messages with their bodies and attempts, the
// history of the delivered ones, the counts; the store then takes,
// delivers and reopens as before.
func TestCompactWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, kept := drainedQueue(t, path, 3000, 100)
	statsBefore, err := q.Summarize(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	historyBefore, recordsBefore, err := q.HistorySize()
	if err != nil {
		t.Fatal(err)
	}
	freeBefore := q.db.Stats().FreePageN
	if !q.compactDue(16 << 20) {
		t.Fatalf("a file of %d bytes with %d free pages is not due for compaction", fileSize(t, path), freeBefore)
	}
	res, err := q.Compact()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d → %d bytes in %v (swap %v); free pages %d → %d", res.SizeBefore, res.SizeAfter, res.Took, res.Swap, freeBefore, q.db.Stats().FreePageN)
	if res.SizeAfter > res.SizeBefore/4 || fileSize(t, path) != res.SizeAfter {
		t.Errorf("file went from %d to %d bytes (%d on disk now)", res.SizeBefore, res.SizeAfter, fileSize(t, path))
	}
	if n := q.db.Stats().FreePageN; n > freeBefore/20 {
		t.Errorf("free pages after the compaction: %d (%d before)", n, freeBefore)
	}
	if q.compactDue(16 << 20) {
		t.Errorf("still due after compacting")
	}
	if leftovers, _ := filepath.Glob(path + compactSuffix + "*"); len(leftovers) > 0 {
		t.Errorf("copies left next to the file: %v", leftovers)
	}
	if got, err := q.Summarize(time.Time{}); err != nil || got.Queued != statsBefore.Queued || got.Deferred != statsBefore.Deferred ||
		got.Pending != statsBefore.Pending || got.Bytes != statsBefore.Bytes || !got.Oldest.Equal(statsBefore.Oldest) {
		t.Errorf("summary after: %+v, %v; before %+v", got, err, statsBefore)
	}
	if size, records, _ := q.HistorySize(); records != recordsBefore || size > historyBefore {
		t.Errorf("history: %d records, %d bytes; before %d, %d", records, size, recordsBefore, historyBefore)
	}
	checkKept := func(q *Queue) {
		t.Helper()
		for _, id := range kept {
			m, err := q.Get(id)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			if m.Attempts != 1 {
				t.Errorf("%s: %d attempts on record, want 1", id, m.Attempts)
			}
			body, err := io.ReadAll(q.Body(id))
			if err != nil || int64(len(body)) != m.Size || q.VerifyBody(m) != nil {
				t.Fatalf("body of %s: %d bytes, %v", id, len(body), err)
			}
		}
	}
	checkKept(q)
	id := put(t, q, "after\r\n", "new@example.org")
	if n := deliverAll(t, q); n != 1 {
		t.Fatalf("delivered %d after the compaction, want the new message only", n)
	}
	if l, err := q.Lookup(id); err != nil || l.Archived == nil || l.Message != nil {
		t.Fatalf("lookup of the new message: %+v, %v", l, err)
	}
	if p := q.Check(); len(p) > 0 {
		t.Fatalf("Check: %v", p)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openAt(t, path, Options{})
	checkKept(q)
	if got, _ := q.Summarize(time.Time{}); got.Queued != statsBefore.Queued {
		t.Errorf("after reopening: %d queued, want %d", got.Queued, statsBefore.Queued)
	}
}

// TestCompactLosesNoConcurrentCommit: four writers put messages without
// pause while the file is compacted again and again; every message whose
// Put returned is in the store afterwards, and again after a reopen.
// Copies that commits overtook are dropped (errCopyStale), never swapped
// in.
func TestCompactLosesNoConcurrentCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, kept := drainedQueue(t, path, 1500, 50)
	var (
		mu    sync.Mutex
		acked = append([]string(nil), kept...)
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id, err := q.Put(context.Background(), Envelope{From: "a@example.org", Recipients: []string{fmt.Sprintf("w%d-%d@example.org", w, i)}}, []byte(strings.Repeat("x", 3000)+"\r\n"))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	swapped, stale := 0, 0
	for range 20 {
		_, err := q.Compact()
		switch {
		case err == nil:
			swapped++
		case errors.Is(err, errCopyStale), errors.Is(err, errSwapBusy):
			stale++
		default:
			t.Fatal(err)
		}
		if swapped >= 3 {
			break
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d copies swapped in, %d dropped as stale; %d messages acknowledged", swapped, stale, len(acked))
	check := func(q *Queue) {
		t.Helper()
		missing := 0
		for _, id := range acked {
			if _, err := q.Get(id); err != nil {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("%d of %d acknowledged messages missing", missing, len(acked))
		}
		if got, _ := q.Summarize(time.Time{}); got.Queued+got.Deferred != len(acked) {
			t.Errorf("%d queued, want %d", got.Queued+got.Deferred, len(acked))
		}
	}
	check(q)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	check(openAt(t, path, Options{}))
}

// TestCompactLeftoverIsRemovedAtOpen: a copy a crash left next to the
// queue file goes at the next Open; the file itself is untouched.
func TestCompactLeftoverIsRemovedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := put(t, q, "hello\r\n", "a@example.org")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	leftover := path + compactSuffix + "123456"
	if err := os.WriteFile(leftover, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	q = openAt(t, path, Options{})
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover copy still there: %v", err)
	}
	if _, err := q.Get(id); err != nil {
		t.Fatal(err)
	}
}

// TestCompactNotDueOnABusyOrSmallFile: a file whose pages are mostly in
// use, or whose free pages are under the threshold, is left alone; 0
// turns compaction off.
func TestCompactNotDueOnABusyOrSmallFile(t *testing.T) {
	q, _ := openTest(t, Options{})
	body := strings.Repeat("0123456789abcdef", 1<<10)
	for range 500 {
		put(t, q, body, "a@example.org")
	}
	if q.compactDue(1 << 20) {
		t.Errorf("a file of messages still queued is due")
	}
	deliverAll(t, q)
	if q.compactDue(1 << 30) {
		t.Errorf("due under the threshold")
	}
	if !q.compactDue(1 << 20) {
		t.Errorf("a drained file of 8 MiB is not due at 1 MiB")
	}
	if q.compactDue(0) {
		t.Errorf("due with compaction off")
	}
}

// TestCompactWaitsForReaders: a swap never happens under an open read
// transaction; it happens once the reader has ended.
func TestCompactWaitsForReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, kept := drainedQueue(t, path, 600, 100)
	defer q.Close()
	r := q.Body(kept[0])
	buf := make([]byte, 10)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	go func() {
		_ = q.db.View(func(*bolt.Tx) error { <-release; return nil })
	}()
	time.Sleep(50 * time.Millisecond) // the reader is open
	done := make(chan error, 1)
	go func() { _, err := q.compactOnce(false); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("compaction ended with a reader open: %v", err)
	case <-time.After(time.Second):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || len(buf)+len(rest) != 16<<10 {
		t.Fatalf("a body read across the swap: %d bytes, %v", len(buf)+len(rest), err)
	}
}

// TestCompactAfterCloseIsRefused: a compaction asked for on the control
// socket while the daemon stops finds the store closed and says so; it
// never touches the closed file.
func TestCompactAfterCloseIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, _ := drainedQueue(t, path, 200, 50)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Compact(); err == nil || !strings.Contains(err.Error(), "closing") {
		t.Fatalf("Compact after Close: %v", err)
	}
	if left, _ := filepath.Glob(path + compactSuffix + "*"); len(left) > 0 {
		t.Errorf("copies left: %v", left)
	}
}

// TestCompactLoopCompactsAQuietDrainedFile: the background loop compacts
// a drained file once it has been quiet, and only then: while a writer
// commits every 100 ms, it waits.
func TestCompactLoopCompactsAQuietDrainedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, _ := drainedQueue(t, path, 1000, 100)
	defer q.Close()
	q.packer.halt()
	q.opts.CompactFree, q.compactEvery = 1<<20, 20*time.Millisecond
	q.packer = runBackground(q.compactLoop)
	before := fileSize(t, path)
	busyUntil := time.Now().Add(3 * time.Second)
	for time.Now().Before(busyUntil) {
		put(t, q, "busy\r\n", "busy@example.org")
		time.Sleep(100 * time.Millisecond)
	}
	if got := fileSize(t, path); got != before {
		t.Fatalf("compacted while commits came every 100 ms: %d → %d bytes", before, got)
	}
	waitUntil := time.Now().Add(20 * time.Second)
	for fileSize(t, path) == before {
		if time.Now().After(waitUntil) {
			t.Fatalf("a quiet drained file of %d bytes was not compacted in 20 s", before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("compacted by the loop: %d → %d bytes", before, fileSize(t, path))
}

// TestCompactOnAFullDisk, on a real 48 MiB tmpfs: with too little room
// for a copy, the compaction is refused up front (ErrFull); when the disk
// fills up after that check, in the middle of the copy, it fails with the
// file system's error. Either way the file is as it was, no copy is left,
// and once there is room again the store takes messages and compacts.
func TestCompactOnAFullDisk(t *testing.T) {
	mnt := smallfs.Mount(t, "48m")
	path := filepath.Join(mnt, "queue.db")
	q, kept := drainedQueue(t, path, 1200, 3) // 16 KiB each, a third kept: ~6.5 MiB in use
	defer q.Close()
	before := fileSize(t, path)
	filler := filepath.Join(mnt, "filler")
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: compacted", what)
		}
		t.Logf("%s: %v", what, err)
		if got := fileSize(t, path); got != before {
			t.Errorf("%s: the file went from %d to %d bytes", what, before, got)
		}
		if left, _ := filepath.Glob(path + compactSuffix + "*"); len(left) > 0 {
			t.Errorf("%s: copies left: %v", what, left)
		}
		for _, id := range kept[:5] {
			if _, err := io.ReadAll(q.Body(id)); err != nil {
				t.Fatalf("%s: body of %s: %v", what, id, err)
			}
		}
	}

	smallfs.Fill(t, filler)
	_, err := q.Compact()
	if !errors.Is(err, ErrFull) {
		t.Errorf("with the disk full: %v, want ErrFull", err)
	}
	check("disk full", err)
	os.Remove(filler)

	beforeCopy = func() { smallfs.Fill(t, filler) }
	_, err = q.Compact()
	beforeCopy = func() {}
	if !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("with the disk filled during the copy: %v, want ErrFull and ENOSPC", err)
	}
	check("disk filled during the copy", err)
	os.Remove(filler)

	put(t, q, "after\r\n", "after@example.org")
	res, err := q.Compact()
	if err != nil {
		t.Fatalf("with room again: %v", err)
	}
	t.Logf("with room again: %d → %d bytes", res.SizeBefore, res.SizeAfter)
	if p := q.Check(); len(p) > 0 {
		t.Fatalf("Check: %v", p)
	}
}

// TestCloseStopsACopy: Close while a copy is under way stops it rather
// than wait for it; the file is as it was, with every message, and no
// copy is left.
func TestCloseStopsACopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, kept := drainedQueue(t, path, 600, 2)
	closed := make(chan error, 1)
	beforeCopy = func() {
		go func() { closed <- q.Close() }()
		<-q.closing // Close has begun; it waits for the copy to end
	}
	defer func() { beforeCopy = func() {} }()
	if _, err := q.Compact(); !errors.Is(err, errCopyStopped) {
		t.Fatalf("a copy interrupted by Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(path + compactSuffix + "*"); len(left) > 0 {
		t.Errorf("copies left: %v", left)
	}
	q = openAt(t, path, Options{})
	for _, id := range kept {
		if _, err := q.Get(id); err != nil {
			t.Fatalf("%s after the stop: %v", id, err)
		}
	}
}
