package queue

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Online compaction. A bbolt file never shrinks, and what its free pages
// cost does not end with their disk blocks (giveback.go gives those back):
// bbolt keeps every free page in its freelist in memory, about 28 bytes
// each, so a queue that once held a million messages kept 20 MiB of heap
// for good, and its next start mapped and walked gigabytes. So, once the
// free pages are at least Options.CompactFree and three times the pages in
// use, the store rewrites the file without them while relayq runs, as the
// offline `relayq compact` does, and swaps the copy in:
//
//  1. The copy is made from a read transaction (bbolt.Compact, then the
//     checks of `relayq compact`: every bucket's entry count, bbolt's own
//     check), fsynced, and opened; commits go on meanwhile. The file's
//     transaction ID is noted before the copy begins.
//  2. The swap waits for a moment with no transaction open (liveDB), and
//     holds every other use of the file off while it: checks that no
//     commit came after the one noted (else the copy is stale: it is
//     dropped and made again later); moves the daemon's claim (claim.go)
//     to the copy; renames the copy over the file and fsyncs the
//     directory; points every use at the copy. A swap takes milliseconds
//     (see the README for 1M drained); the copy before it, about a second per 150 MB
//     in use. The old file is closed after the swap: the last close of
//     an unlinked file of gigabytes takes the kernel a while.
//
// The background loop (compactLoop) starts a copy only after the file has
// gone compactQuiet without a commit: a draining queue commits all the
// time, and its copies would only be overtaken. When commits overtake
// compactTries copies in a row anyway, a file with at most
// compactLockedMax in use is copied once more with every other use held
// off (commits then wait for the copy, under half a second); a larger one
// waits for the next look. `relayq compact` (Compact) holds them off for
// the last copy whatever the size: an operator asked for it.
//
// A crash at any point leaves one whole file at the queue's path: the old
// one until the rename, the copy (fsynced before it) after it. The copy's
// temporary file (<file>.compact-*) left by a crash is removed at the next
// Open. A copy that fails (a full disk, a damaged page) leaves the file as
// it was, and is tried again after compactBackoff.

const (
	// compactInterval is how often the store looks whether a compaction
	// is due.
	compactInterval = time.Minute
	// compactRatio is how many times the pages in use the free pages must
	// be for a compaction to be due.
	compactRatio = 3
	// compactTries is how many copies in a row the store makes when
	// commits keep coming during the copy, before it waits for the next
	// look.
	compactTries = 3
	// compactSwapWait bounds the wait for a moment with no transaction
	// open, polled every compactSwapPoll.
	compactSwapWait = 5 * time.Second
	compactSwapPoll = time.Millisecond
	// compactBackoff is how long the store waits after a copy failed
	// before it tries again.
	compactBackoff = time.Hour
)

// beforeCopy runs after the check for room and before the copy: tests
// take the room away there.
var beforeCopy = func() {}

// errCopyStale is a copy that commits overtook before it could be swapped in.
var errCopyStale = errors.New("the queue changed during the copy")

// errSwapBusy is a swap that found transactions open for all of
// compactSwapWait.
var errSwapBusy = errors.New("the queue was never idle long enough to swap the copy in")

// CompactLive says what a compaction while relayq ran did.
type CompactLive struct {
	SizeBefore int64         `json:"size_before"`
	SizeAfter  int64         `json:"size_after"`
	Took       time.Duration `json:"took"` // the whole of it, copy included
	Swap       time.Duration `json:"swap"` // what other uses of the file waited
}

// compactDue reports whether the file's free pages are worth a
// compaction: at least min bytes, and compactRatio times what is in use.
func (q *Queue) compactDue(min int64) bool {
	if min <= 0 || q.pages.damaged() != nil || !q.pages.finished() {
		return false
	}
	free, inUse, err := q.pagesInUse()
	return err == nil && free >= min && free >= compactRatio*inUse
}

// pagesInUse returns the bytes of the file's free pages and of those in
// use, up to its high-water mark (bbolt grows the file ahead of it).
func (q *Queue) pagesInUse() (free, inUse int64, err error) {
	err = q.db.View(func(tx *bolt.Tx) error {
		st := tx.DB().Stats()
		free = int64(st.FreePageN+st.PendingPageN) * int64(tx.DB().Info().PageSize)
		inUse = tx.Size() - free
		return nil
	})
	return free, inUse, err
}

// Compact rewrites the queue file without its free pages while the store
// is in use, and swaps the copy in (see above); `relayq compact` asks for
// it. When commits keep overtaking the copy, the last copy is made with
// every other use of the file held off: an operator asked for it. It
// fails, leaving the file as it was, when the file system has no room for
// the copy or a page is damaged.
func (q *Queue) Compact() (res CompactLive, err error) {
	return q.compact(math.MaxInt64)
}

// compact is Compact; when commits never stop for the length of a copy,
// a file with at most heldMax bytes in use is copied with every other use
// held off meanwhile.
func (q *Queue) compact(heldMax int64) (res CompactLive, err error) {
	start := time.Now()
	defer func() {
		res.Took = time.Since(start)
		if err != nil {
			err = fmt.Errorf("queue: compact %s while running: %w", q.db.Path(), err)
			return
		}
		q.log.Info("compacted the queue file", "size_before", res.SizeBefore, "size_after", res.SizeAfter,
			"took", res.Took.Round(time.Millisecond), "swap", res.Swap.Round(time.Microsecond))
	}()
	if err := q.pages.damaged(); err != nil {
		return res, err
	}
	if !q.pages.finished() {
		return res, errors.New("the file is still being read through after the start")
	}
	q.passes.Lock() // giveback.go: no pass over the file while it is replaced
	defer q.passes.Unlock()
	if q.closed {
		return res, errors.New("the queue is closing")
	}
	for range compactTries {
		res, err = q.compactOnce(false)
		if !errors.Is(err, errCopyStale) {
			return res, err
		}
	}
	if _, inUse, ierr := q.pagesInUse(); ierr == nil && inUse <= heldMax {
		res, err = q.compactOnce(true)
	}
	return res, err
}

// compactLockedMax is the most bytes in use that a copy made with every
// other use of the file held off may copy: commits wait for it, about a
// second per 150 MB here.
const compactLockedMax = 64 << 20

// compactOnce makes one copy and swaps it in. With held, it holds every
// other use of the file off from before the copy to the swap, so that no
// commit can make the copy stale; without, commits go on during the copy.
func (q *Queue) compactOnce(held bool) (res CompactLive, err error) {
	path := q.db.Path()
	fi, err := os.Stat(path)
	if err != nil {
		return res, err
	}
	res.SizeBefore = fi.Size()
	_, inUse, err := q.pagesInUse()
	if err != nil {
		return res, err
	}
	if free, err := FreeSpace(filepath.Dir(path)); err == nil && free-inUse < q.opts.MinFree+inUse/8 {
		return res, fmt.Errorf("%w: %d bytes free on the file system, a copy needs about %d and min_free is %d", ErrFull, free, inUse+inUse/8, q.opts.MinFree)
	}

	// What the queue left behind (after a drain, tens of MB of heap the
	// runtime has not given back yet) goes first, so that the copy's
	// own memory comes on top of little: the copy is the daemon's peak.
	debug.FreeOSMemory()
	beforeCopy() // tests fill the disk here
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+compactSuffix+"*")
	if err != nil {
		return res, err
	}
	tmpPath := tmp.Name()
	tmp.Close()
	var copied *bolt.DB
	defer func() {
		if err != nil {
			if copied != nil {
				copied.Close()
			}
			os.Remove(tmpPath)
		}
	}()
	before, err := q.txID()
	if err != nil {
		return res, err
	}
	// Only this goroutine replaces the file, so the one read here stays
	// open until the swap below.
	makeCopy := func() error {
		if _, err := copyInto(tmpPath, func(dst *bolt.DB) (map[string]int, error) { // maintenance.go
			return copyLive(dst, q.db.raw(), q.closing)
		}); err != nil {
			return err
		}
		if err := matchOwner(tmpPath, fi); err != nil {
			return err
		}
		copied, err = bolt.Open(tmpPath, fileMode, boltOptions(q.opts))
		return err
	}
	if !held {
		if err := fullErr(makeCopy()); err != nil {
			// A commit during the copy makes its checks differ (the
			// counts are taken apart from it): that copy is stale. A full
			// disk or a stop is what it says, whatever came meanwhile.
			if now, _ := q.txID(); now != before && !errors.Is(err, ErrFull) && !errors.Is(err, errCopyStopped) {
				return res, errCopyStale
			}
			return res, err
		}
	}
	swapStart := time.Now()
	var swapErr error
	old := q.db.raw()
	if !q.exclusively(func() {
		if held {
			if before, swapErr = txIDOf(q.db.raw()); swapErr != nil {
				return
			}
			if swapErr = fullErr(makeCopy()); swapErr != nil {
				return
			}
		}
		swapErr = q.swap(copied, tmpPath, before)
	}) {
		return res, errSwapBusy
	}
	res.Swap = time.Since(swapStart)
	if swapErr != nil {
		return res, swapErr
	}
	copied = nil // the store's file now
	// Nothing reaches the old file any more (every use goes through
	// q.db). Closed out of the swap: unmapping it and the last close of
	// an unlinked file of gigabytes (the kernel frees its blocks) took
	// 0.6 s at 1M, which commits would have waited for.
	if err := old.Close(); err != nil {
		q.log.Warn("cannot close the queue file replaced by its compacted copy", "err", err)
	}
	if after, err := os.Stat(path); err == nil {
		res.SizeAfter = after.Size()
	}
	q.given.forget() // giveback.go: the copy has no free pages to give back
	// The old file's freelist, and the copy's page buffers, go back to
	// the system at once rather than in minutes. bbolt keeps a commit's
	// page buffers in a sync.Pool, which outlives one collection: at 1M
	// drained, 65 MB of them were still live after a single one.
	runtime.GC()
	debug.FreeOSMemory()
	return res, nil
}

// txID is the ID of the file's last commit.
func (q *Queue) txID() (uint64, error) { return txIDOf(q.db) }

func txIDOf(db viewer) (id uint64, err error) {
	err = db.View(func(tx *bolt.Tx) error { id = uint64(tx.ID()); return nil })
	return id, err
}

// copyLive copies every bucket of src into dst, from one read transaction
// that stays open until the last commit of the copy, and returns the
// entry counts of src's top-level buckets as that transaction sees them.
//
// Not bbolt.Compact, which the offline compaction uses: it ends its read
// of the source before its last commit, and a value in that commit is
// still read from the source's memory map, which a commit to a source in
// use may have remapped meanwhile (it faults: a SIGSEGV, found by
// TestCompactLosesNoConcurrentCommit). bbolt v1.5.0.
func copyLive(dst, src *bolt.DB, stop <-chan struct{}) (map[string]int, error) {
	tx, err := src.Begin(false)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	keys := make(map[string]int)
	c := &liveCopy{dst: dst, stop: stop}
	if c.w, err = dst.Begin(true); err != nil {
		return nil, err
	}
	defer func() {
		if c.w != nil {
			c.w.Rollback()
		}
	}()
	err = tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		keys[string(name)] = b.Stats().KeyN
		return c.bucket([][]byte{name}, b)
	})
	if err != nil {
		return nil, err
	}
	err = c.w.Commit()
	c.w = nil
	return keys, err
}

// liveCopy is copyLive's write side.
type liveCopy struct {
	dst  *bolt.DB
	w    *bolt.Tx
	size int64 // bytes put since the last commit
	stop <-chan struct{}
	n    int // entries put, to look at stop every so often
}

// liveCopyTxSize bounds the bytes one commit of a live copy carries. A
// commit holds bbolt's nodes and the new pages of all of it in memory,
// and the collector lets the heap grow to twice that before it runs: with
// the offline compaction's 64 MiB, copying the 211 MiB file of a drained
// million took the daemon's RssAnon to 394 MiB, against the 64 MiB it
// keeps at 1M; 4 MiB peaked at 67 MiB after a real drain (bbolt's
// freelist of the old file is still live then), 2 MiB at 61. Smaller
// commits cost an fsync each, ~100 for that file (the copy took 2.7 s).
const liveCopyTxSize = 2 << 20

// errCopyStopped ends a copy that Close interrupted.
var errCopyStopped = errors.New("the queue is closing")

// bucket copies b, found at path, with its nested buckets.
func (c *liveCopy) bucket(path [][]byte, b *bolt.Bucket) error {
	if _, err := c.create(path, b.Sequence()); err != nil {
		return err
	}
	cur := b.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if v == nil {
			if child := b.Bucket(k); child != nil {
				if err := c.bucket(append(slices.Clip(path), k), child); err != nil {
					return err
				}
				continue
			}
		}
		if c.size+int64(len(k)+len(v)) > liveCopyTxSize {
			if err := c.w.Commit(); err != nil {
				c.w = nil
				return err
			}
			var err error
			if c.w, err = c.dst.Begin(true); err != nil {
				return err
			}
			c.size = 0
		}
		if c.n++; c.n%1024 == 0 {
			select {
			case <-c.stop:
				return errCopyStopped
			default:
			}
		}
		into, err := c.open(path)
		if err != nil {
			return err
		}
		into.FillPercent = 1.0 // a copy is written in key order, once
		if err := into.Put(k, v); err != nil {
			return err
		}
		c.size += int64(len(k) + len(v))
	}
	return nil
}

// create makes the bucket at path in the copy, with its sequence.
func (c *liveCopy) create(path [][]byte, seq uint64) (*bolt.Bucket, error) {
	var b *bolt.Bucket
	var err error
	if len(path) == 1 {
		b, err = c.w.CreateBucket(path[0])
	} else {
		var parent *bolt.Bucket
		if parent, err = c.open(path[:len(path)-1]); err != nil {
			return nil, err
		}
		b, err = parent.CreateBucket(path[len(path)-1])
	}
	if err != nil {
		return nil, err
	}
	return b, b.SetSequence(seq)
}

// open finds the bucket at path in the copy's current transaction.
func (c *liveCopy) open(path [][]byte) (*bolt.Bucket, error) {
	b := c.w.Bucket(path[0])
	for _, name := range path[1:] {
		if b == nil {
			break
		}
		b = b.Bucket(name)
	}
	if b == nil {
		return nil, fmt.Errorf("bucket %q missing from the copy", path)
	}
	return b, nil
}

// exclusively runs fn once no transaction is open, polling for such a
// moment for up to compactSwapWait; it reports whether fn ran.
func (q *Queue) exclusively(fn func()) bool {
	deadline := time.Now().Add(compactSwapWait)
	for {
		if q.db.exclusive(fn) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(compactSwapPoll)
	}
}

// swap puts copied (the file at tmpPath) in the place of the store's file,
// when the file is still at transaction before. It runs with the file to
// itself (liveDB.exclusive).
func (q *Queue) swap(copied *bolt.DB, tmpPath string, before uint64) error {
	old := q.db.raw()
	if now, err := txIDOf(old); err != nil {
		return err
	} else if now != before {
		return errCopyStale
	}
	path := q.db.Path()
	if err := q.opts.Claim.takeOver(tmpPath); err != nil { // claim.go
		return fmt.Errorf("cannot claim the copy: %w", err)
	}
	// The sidecar describes the old file's saved freelist; the copy has
	// none (freelist.go).
	if err := os.Remove(path + freelistSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.opts.Claim.takeOver(path)
		return err
	}
	if err := os.Rename(tmpPath, path); err != nil {
		if cerr := q.opts.Claim.takeOver(path); cerr != nil {
			q.log.Error("cannot claim the queue file again after a failed compaction; a second relayq serve would not be stopped", "err", cerr)
		}
		return err
	}
	q.db.db = copied
	if err := syncDir(filepath.Dir(path)); err != nil {
		// The rename is done, and every commit from now on goes to the
		// copy; only a crash before the directory reaches the disk would
		// bring the old file back, with the commits since.
		q.log.Error("cannot fsync the queue's directory after swapping in its compacted copy; a crash before it is written would bring back the old file", "err", err)
	}
	return nil
}

// compactQuiet is how long the file must go without a commit for the
// background loop to start a copy: a queue that is draining commits all
// the time, and a copy made then would only be overtaken.
const compactQuiet = 2 * time.Second

// quiet reports whether no commit came for compactQuiet (false if stop
// came first).
func (q *Queue) quiet(stop <-chan struct{}) bool {
	before, err := q.txID()
	if err != nil {
		return false
	}
	select {
	case <-time.After(compactQuiet):
	case <-stop:
		return false
	}
	now, err := q.txID()
	return err == nil && now == before
}

// compactSuffix names the copy's temporary file after the queue file, as
// the offline compaction does (maintenance.go).
const compactSuffix = ".compact-"

// removeCompactLeftovers removes the temporary files of copies that a
// crash interrupted, next to the file at path. Open calls it once it holds
// the file's lock: no compaction of it can be running then.
func removeCompactLeftovers(path string) {
	leftovers, _ := filepath.Glob(path + compactSuffix + "*")
	for _, f := range leftovers {
		os.Remove(f)
	}
}

// compactLoop compacts the file whenever compactDue says so, looking every
// compactInterval, until stop.
func (q *Queue) compactLoop(stop <-chan struct{}) {
	ticker := time.NewTicker(cmp.Or(q.compactEvery, compactInterval))
	defer ticker.Stop()
	var failedAt time.Time
	for {
		select {
		case <-ticker.C:
		case <-stop:
			return
		}
		if !failedAt.IsZero() && time.Since(failedAt) < compactBackoff || !q.compactDue(q.opts.CompactFree) || !q.quiet(stop) {
			continue
		}
		_, err := q.compact(compactLockedMax)
		switch {
		case errors.Is(err, errCopyStale) || errors.Is(err, errSwapBusy):
			q.log.Info("the queue was too busy to compact its file; trying again later", "err", err)
		case err != nil:
			failedAt = time.Now()
			q.log.Warn("cannot compact the queue file while running; trying again in an hour", "err", err)
		default:
			failedAt = time.Time{} // compact logged it
		}
	}
}
