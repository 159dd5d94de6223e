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
// offline `relayq queue compact` gave them back). So, while the daemon
// runs, the store gives the disk blocks under free pages back to the file
// system (fallocate PUNCH_HOLE): the file keeps its length and its pages,
// but a free page then takes no room on the disk until bbolt writes to it
// again, which it does as to any free page.
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

const (
	// giveBackKeep is how much room in free pages keeps its disk blocks.
	giveBackKeep = 64 << 20
	// giveBackMin is the least room a pass must have to give back for
	// the background loop to run it: a pass holds the write lock while it
	// reads a page header for every page of the file.
	giveBackMin = 64 << 20
	// giveBackInterval is how often the background loop looks.
	giveBackInterval = time.Minute
)

// errNoChange rolls back the transaction GiveBack looks in: it changes
// nothing, and a commit would cost an fsync.
var errNoChange = errors.New("nothing to commit")

// givenBack is what the store knows of the pages it gave back.
type givenBack struct {
	keep int64 // bytes of free pages that keep their blocks: giveBackKeep; tests set less

	mu    sync.Mutex
	pages int64 // free pages given back at the last pass (some reused since)
	// wasFree has a bit set for each page that was free at the last
	// pass; only GiveBack, under bbolt's write lock, uses it.
	wasFree []uint64
	// lastPass is the transaction ID of the last pass, and settled the
	// one at which two passes in a row ran: with no commit since, a third
	// would find what they found and give back nothing more, so it is
	// skipped (at a million queued, a pass reads every page header of the
	// file and allocates ~40 B per page). Only GiveBack uses them, under
	// bbolt's write lock.
	lastPass, settled int
}

// GiveBack returns the disk blocks of the file's free pages, but the
// first giveBackKeep bytes of them, to the file system, and reports how
// many bytes of free pages are now without blocks. It does nothing (0,
// nil) while a read transaction is open; the background loop tries again
// later.
func (q *Queue) GiveBack() (int64, error) {
	var looked bool
	var given int64 // pages
	err := q.db.Update(func(tx *bolt.Tx) error {
		if q.db.Stats().OpenTxN != 0 {
			return errNoChange
		}
		if tx.ID() == q.given.settled {
			return errNoChange
		}
		if tx.ID() == q.given.lastPass {
			q.given.settled = tx.ID()
		}
		q.given.lastPass = tx.ID()
		looked = true
		pageSize := int64(q.db.Info().PageSize)
		keep, punch, err := freeRuns(tx, q.given.keep/pageSize, &q.given.wasFree)
		if err != nil {
			return err
		}
		// Its own descriptor: bbolt's lock is flock(2), which closing
		// another descriptor of the file does not release.
		f, err := os.OpenFile(q.db.Path(), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
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
		return errNoChange
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return 0, fmt.Errorf("queue: give back free pages: %w", err)
	}
	if !looked {
		return 0, nil
	}
	q.given.mu.Lock()
	q.given.pages = given
	q.given.mu.Unlock()
	return given * int64(q.db.Info().PageSize), nil
}

// pageRun is a run of pages of the file.
type pageRun struct{ first, pages int64 }

// freeRuns returns the runs of free pages of tx's file in page order, the
// first keep pages of them in kept and the rest that were free at the last
// pass too (wasFree) in punch; wasFree is then set to the pages free now.
func freeRuns(tx *bolt.Tx, keep int64, wasFree *[]uint64) (kept, punch []pageRun, err error) {
	pageSize := int64(tx.DB().Info().PageSize)
	high := tx.Size() / pageSize
	before := *wasFree
	now := make([]uint64, (high+63)/64)
	defer func() {
		if err == nil {
			*wasFree = now
		}
	}()
	add := func(runs []pageRun, id int64) []pageRun {
		if n := len(runs); n > 0 && runs[n-1].first+runs[n-1].pages == id {
			runs[n-1].pages++
			return runs
		}
		return append(runs, pageRun{id, 1})
	}
	for id := int64(2); id < high; id++ { // pages 0 and 1 are bbolt's meta pages
		info, err := tx.Page(int(id))
		if err != nil {
			return nil, nil, err
		}
		if info == nil || info.Type != "free" {
			continue
		}
		now[id/64] |= 1 << (id % 64)
		switch {
		case keep > 0:
			keep--
			kept = add(kept, id)
		case id/64 < int64(len(before)) && before[id/64]&(1<<(id%64)) != 0:
			punch = add(punch, id)
		}
	}
	return kept, punch, nil
}

// fileFree is the room in the file's free pages that takes no new disk
// blocks to reuse, for space.go.
func (q *Queue) fileFree() int64 {
	q.given.mu.Lock()
	given := q.given.pages
	q.given.mu.Unlock()
	return max(0, int64(q.db.Stats().FreeAlloc)-given*int64(q.db.Info().PageSize))
}

// giveBackLoop runs GiveBack every giveBackInterval when there is at
// least giveBackMin to give back.
func (q *Queue) giveBackLoop(stop <-chan struct{}) {
	ticker := time.NewTicker(giveBackInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
		case <-stop:
			return
		}
		if q.fileFree() < q.given.keep+giveBackMin {
			continue
		}
		n, err := q.GiveBack()
		switch {
		case errors.Is(err, errPunchUnsupported):
			return
		case err != nil:
			q.log.Warn("cannot give the queue file's free pages back to the file system", "err", err)
		case n > 0:
			q.log.Info("gave the queue file's free pages back to the file system", "bytes", n)
		}
	}
}
