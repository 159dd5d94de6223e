package queue

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A bbolt file never shrinks: the pages a drained queue no longer uses
// stay in the file, free for bbolt to reuse, and a queue that once held a
// million messages kept its gigabytes on the disk for good (only the
// offline `relayq compact` gave them back). So, while the daemon
// runs, the store gives the disk blocks under free pages back to the file
// system (fallocate PUNCH_HOLE): the file keeps its length and its pages,
// but a free page then takes no room on the disk until bbolt writes to it
// again, which it does as to any free page. Once the free pages are most
// of the file, online compaction (compact_live.go) replaces the file with
// a copy without them.
//
// Which pages are free is bbolt's to say: GiveBack asks it page by page
// (Tx.Page) inside a read-write transaction, so that no commit can take
// a page while it looks. bbolt counts as free the pages freed by recent
// commits that an older read transaction may still be reading, so a page
// is given back only when no read transaction is open (a reader that
// starts meanwhile sees the latest commit, which uses no free page) and
// when it was free at the previous pass already, a minute before: even if
// bbolt's count of open readers were stale for a moment, the reader would
// have to have lasted that long, and relayq's read transactions are short
// (a body is read a chunk per transaction).
// The lowest-numbered free pages, giveBackKeep bytes of them, keep their
// blocks: a busy queue frees and reuses pages at every commit, and those
// should not need new blocks each time. Nothing else changes, so a crash
// at any point leaves the file as bbolt wrote it.
//
// The room inside the file that Put counts as free (space.go) leaves out
// the pages given back, which now take room on the file system again when
// reused: their count is exact after each pass, and only too low (so Put
// refuses a little early on a nearly full disk) between passes, as bbolt
// reuses them.

// A pass is cheap when there is nothing new to give back, and never holds
// the write lock long:
//
//   - The loop runs a pass only when pages may have been freed since the
//     last one that were not given back (giveBackDue): bbolt counts its
//     free pages and the pages it allocated, so the pages freed since the
//     last pass are at most the growth of the free count plus the pages
//     allocated. An idle queue, drained or not, reads no page.
//   - A pass looks at giveBackChunk pages per read-write transaction, not
//     at the whole file in one: a commit waits for one chunk at most, and
//     the pages read are dropped from the resident set after each chunk
//     (mapped.go). What was free is decided page by page under the lock,
//     so splitting the pass changes nothing for a page: it is given back
//     when it was free at the previous look at it too.

const (
	// giveBackKeep is how much room in free pages keeps its disk blocks.
	giveBackKeep = 64 << 20
	// giveBackMin is the least room that may have become free without
	// being given back for the background loop to run a pass.
	giveBackMin = 64 << 20
	// giveBackInterval is how often the background loop looks.
	giveBackInterval = time.Minute
	// giveBackChunk is how many pages one transaction of a pass looks
	// at: 16 MiB of 4 KiB pages.
	giveBackChunk = 4096
	// giveBackWaits is how many times a pass that meets a read
	// transaction waits giveBackWait for it to end before it stops.
	giveBackWaits = 50
	giveBackWait  = 20 * time.Millisecond
)

// errNoChange rolls back the transaction GiveBack looks in: it changes
// nothing, and a commit would cost an fsync.
var errNoChange = errors.New("nothing to commit")

// errReaderOpen ends a pass that found a read transaction open.
var errReaderOpen = errors.New("a read transaction is open")

// givenBack is what the store knows of the pages it gave back.
type givenBack struct {
	keep  int64 // bytes of free pages that keep their blocks: giveBackKeep; tests set less
	min   int64 // giveBackMin; tests set less
	chunk int64 // pages per transaction of a pass: giveBackChunk when 0; tests set less

	mu    sync.Mutex
	pages int64 // free pages given back at the last pass (some reused since)
	// wasFree has a bit set for each page that was free at the last
	// pass; only GiveBack, under bbolt's write lock, uses it.
	wasFree []uint64
	// What the last pass that looked at every page left: whether there
	// was one, bbolt's count of free pages and of pages allocated then,
	// and how many free pages it neither kept nor gave back (free since
	// the pass before: the next pass gives them back).
	passed          bool
	freeAt, allocAt int64
	pending         int64
	// pagesRead counts the pages passes looked at, for tests.
	pagesRead int64
}

// forget drops what the passes learnt of the file, which online
// compaction replaced (compact_live.go): the next pass starts afresh.
func (g *givenBack) forget() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pages, g.wasFree, g.passed, g.freeAt, g.allocAt, g.pending = 0, nil, false, 0, 0, 0
}

// freeCounts returns bbolt's count of free pages (pending ones included)
// and of the pages it has allocated since Open.
func (q *Queue) freeCounts() (free, allocated int64) {
	st := q.db.Stats()
	return int64(st.FreePageN + st.PendingPageN), st.TxStats.GetPageCount()
}

// giveBackDue reports whether a pass may find at least giveBackMin of
// free pages to give back, beyond the giveBackKeep kept, that the last
// pass did not: the pages it left for the next one, and those freed since,
// which are at most the growth of the free count plus the pages bbolt
// allocated (each reused free page was allocated). (Not fileFree: it
// counts the pages given back as still without blocks after bbolt reused
// them, until the next pass.)
func (q *Queue) giveBackDue() bool {
	pageSize := int64(q.db.PageSize())
	free, allocated := q.freeCounts()
	g := &q.given
	g.mu.Lock()
	defer g.mu.Unlock()
	room := free - g.keep/pageSize // what a pass could give back at most
	if g.passed {
		freed := max(0, free-g.freeAt+allocated-g.allocAt)
		room = min(room, g.pending+freed)
	}
	return room*pageSize >= g.min
}

// GiveBack returns the disk blocks of the file's free pages, but the
// first giveBackKeep bytes of them, to the file system, and reports how
// many bytes of free pages are now without blocks. Where it meets an
// open read transaction it waits for it a while (giveBackWaits), then
// stops there: (0, nil) when it had not begun; the background loop tries
// again later.
func (q *Queue) GiveBack() (int64, error) {
	pageSize := int64(q.db.PageSize())
	// Its own descriptor: bbolt's lock is flock(2), which closing
	// another descriptor of the file does not release.
	q.passes.Lock() // compact_live.go: the file stays the same for the whole pass
	defer q.passes.Unlock()
	if q.closed {
		return 0, nil
	}
	f, err := os.OpenFile(q.db.Path(), os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("queue: give back free pages: %w", err)
	}
	defer f.Close()
	free0, alloc0 := q.freeCounts()
	pass := passState{keep: q.given.keep / pageSize}
	var given int64 // pages
	chunk := q.given.chunk
	if chunk <= 0 {
		chunk = giveBackChunk
	}
	pass.upTo = 2 // pages 0 and 1 are bbolt's meta pages
	waits := 0
	for {
		var end bool
		first := pass.upTo
		err := q.db.Update(func(tx *bolt.Tx) error {
			if q.db.Stats().OpenTxN != 0 {
				return errReaderOpen
			}
			high := tx.Size() / pageSize
			last := min(first+chunk, high)
			keep, punch, err := pass.freeRuns(tx, first, last, &q.given.wasFree)
			end = pass.complete()
			if err != nil {
				return err
			}
			for _, r := range punch {
				if err := punchHole(f, r.first*pageSize, r.pages*pageSize); err != nil {
					return err
				}
				given += r.pages
			}
			// Pages given back by an earlier pass may be among those kept
			// now: they get blocks again, or are counted as given.
			for _, r := range keep {
				if allocateRange(f, r.first*pageSize, r.pages*pageSize) != nil {
					given += r.pages
				}
			}
			// mapped.go: the headers read leave the resident set.
			_ = dontNeed(tx.DB().Info().Data+uintptr(first*pageSize), (pass.upTo-first)*pageSize)
			return errNoChange
		})
		if errors.Is(err, errReaderOpen) {
			if waits < giveBackWaits {
				waits++ // relayq's readers are short: look again in a moment
				time.Sleep(giveBackWait)
				continue
			}
			if first == 2 {
				return 0, nil
			}
			break // what was done stays done; the next pass looks again
		}
		if err != nil && !errors.Is(err, errNoChange) {
			return 0, fmt.Errorf("queue: give back free pages: %w", err)
		}
		if end {
			break
		}
	}
	free1, alloc1 := q.freeCounts()
	q.given.mu.Lock()
	q.given.pagesRead += pass.read
	if !pass.complete() {
		// The pages given back before, in the part not looked at, are
		// still without blocks unless reused: an estimate.
		given = max(given, q.given.pages)
	}
	q.given.pages = given
	if pass.complete() {
		// The counts from before the pass: what was freed during it is
		// counted as new at the next.
		q.given.passed, q.given.freeAt, q.given.allocAt = true, min(free0, free1), min(alloc0, alloc1)
		q.given.pending = pass.fresh
	}
	q.given.mu.Unlock()
	return given * pageSize, nil
}

// passState is what a pass of GiveBack carries from one chunk to the next.
type passState struct {
	keep  int64 // free pages still to keep their blocks
	fresh int64 // free pages neither kept nor given back: not free at the last pass
	read  int64 // pages looked at
	upTo  int64 // the pages below it have been looked at
	high  int64 // the file's pages at the last chunk
}

// complete reports whether the pass looked at every page of the file.
func (p *passState) complete() bool { return p.high > 0 && p.upTo >= p.high }

// pageRun is a run of pages of the file.
type pageRun struct{ first, pages int64 }

// freeRuns returns the runs of free pages among the pages [first, last)
// of tx's file in page order: those while p.keep lasts in kept, the rest
// that were free at the last pass too (wasFree) in punch; wasFree then
// has the pages free now. A page in use is skipped with its overflow
// pages (not pages of their own: their "headers" are data), which may
// reach past last: p.upTo is where the next chunk starts.
func (p *passState) freeRuns(tx *bolt.Tx, first, last int64, wasFree *[]uint64) (kept, punch []pageRun, err error) {
	pageSize := int64(tx.DB().Info().PageSize)
	p.high = tx.Size() / pageSize
	if words := int((p.high + 63) / 64); len(*wasFree) < words {
		*wasFree = append(*wasFree, make([]uint64, words-len(*wasFree))...)
	}
	bits := *wasFree
	add := func(runs []pageRun, id int64) []pageRun {
		if n := len(runs); n > 0 && runs[n-1].first+runs[n-1].pages == id {
			runs[n-1].pages++
			return runs
		}
		return append(runs, pageRun{id, 1})
	}
	id := first
	for ; id < last; id++ {
		info, err := tx.Page(int(id))
		if err != nil {
			return nil, nil, err
		}
		p.read++
		word, bit := id/64, uint64(1)<<(id%64)
		was := bits[word]&bit != 0
		bits[word] &^= bit
		if info == nil || info.Type != "free" {
			if info != nil && info.OverflowCount > 0 {
				end := min(id+int64(info.OverflowCount), p.high-1)
				for o := id + 1; o <= end; o++ {
					bits[o/64] &^= 1 << (o % 64)
				}
				id = end
			}
			continue
		}
		bits[word] |= bit
		switch {
		case p.keep > 0:
			p.keep--
			kept = add(kept, id)
		case was:
			punch = add(punch, id)
		default:
			p.fresh++
		}
	}
	p.upTo = max(last, id)
	return kept, punch, nil
}

// fileFree is the room in the file's free pages that takes no new disk
// blocks to reuse, for space.go.
func (q *Queue) fileFree() int64 {
	q.given.mu.Lock()
	given := q.given.pages
	q.given.mu.Unlock()
	return max(0, int64(q.db.Stats().FreeAlloc)-given*int64(q.db.PageSize()))
}

// giveBackLoop runs GiveBack every giveBackInterval when giveBackDue.
func (q *Queue) giveBackLoop(stop <-chan struct{}) {
	ticker := time.NewTicker(giveBackInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
		case <-stop:
			return
		}
		if !q.giveBackOnce() {
			return
		}
	}
}

// giveBackOnce runs a pass of GiveBack when giveBackDue, and reports
// whether the loop should go on (false: the file system cannot punch holes).
func (q *Queue) giveBackOnce() bool {
	if !q.giveBackDue() {
		return true
	}
	n, err := q.GiveBack()
	switch {
	case errors.Is(err, errPunchUnsupported):
		return false
	case err != nil:
		q.log.Warn("cannot give the queue file's free pages back to the file system", "err", err)
	case n > 0:
		q.log.Info("gave the queue file's free pages back to the file system", "bytes", n)
	}
	return true
}
