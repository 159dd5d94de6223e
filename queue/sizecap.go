package queue

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// Options.MaxSize caps the database file: bbolt refuses a commit that
// would grow the file past it (ErrMaxSizeReached; ErrFull to the caller).
// Such a commit is costly to refuse. bbolt undoes a commit that failed by
// rebuilding its list of free pages, and with NoFreelistSync (boltOptions)
// it rebuilds it by reading every page the file uses (bbolt v1.5.0
// tx.rollback → DB.freepages), holding the write lock: about a second
// for a million queued messages with the file in the page cache, more
// from the disk, during which nothing commits, not even the
// deliveries that would make room; and the committer runs each change of a
// failed batch again alone, each failing again. (A change function that
// returns an error costs nothing of the kind: Update rolls that back
// without the rebuild.) A queue at its cap, with clients that keep
// retrying, read the whole file for every message it refused.
//
// So Put refuses at once, without a commit, what cannot fit (sizeCap):
//
//   - a message larger than the room left under the cap (capRoom: bbolt's
//     free pages and what the file may still grow by, as bbolt computes
//     it), with an eighth more for bbolt's page rounding and capSlack for
//     the pages a commit rewrites;
//   - after a commit failed at the cap: any message for fullHold, and a
//     message as large as the one that failed for as long as it takes,
//     unless the room has grown by the message since (deliveries freed
//     pages). The room is an estimate: a large body needs runs of free
//     pages, which a fragmented file may not have, so a commit may still
//     fail at the cap; the hold keeps the next ones from doing the same.
//
// Room (intake's check at MAIL) says the same for a message of no size:
// 452 at MAIL during the hold.

// capSlack is what a Put needs beyond its body under the cap: its record,
// and the pages of the buckets' trees that its commit writes anew.
const capSlack = 16 << 10

// sizeCap keeps Put from commits that would fail at Options.MaxSize.
type sizeCap struct {
	limit int64                     // Options.MaxSize; 0: no cap
	room  func(atLeast int64) int64 // capRoom
	now   func() time.Time          // Options.Now

	mu sync.Mutex
	// When a commit last failed at the cap (noteFailed), the room then
	// and the size of the message that did not fit.
	failed             time.Time
	roomThen, sizeThen int64
}

// admit returns ErrFull when a message of size bytes cannot fit under the
// cap, or when one did not fit a moment ago, or one as large did not fit,
// and the room has not grown by as much since.
func (c *sizeCap) admit(size int64) error {
	if c.limit <= 0 {
		return nil
	}
	need := size + size/8 + capSlack
	room := c.room(need)
	if room < need {
		return fmt.Errorf("%w: the queue file is at max_size (%d bytes): %d bytes left in it, the message needs about %d", ErrFull, c.limit, room, need)
	}
	c.mu.Lock()
	failed, then, sizeThen := c.failed, c.roomThen, c.sizeThen
	c.mu.Unlock()
	held := c.now().Sub(failed) < fullHold || size >= sizeThen
	if !failed.IsZero() && held && room < then+need {
		return fmt.Errorf("%w: the queue file is at max_size (%d bytes): a message of %d bytes did not fit, with %d bytes left in it", ErrFull, c.limit, sizeThen, then)
	}
	return nil
}

// noteFailed records that a message of size bytes did not fit, if err
// says that its commit failed at the cap.
func (c *sizeCap) noteFailed(err error, size int64) {
	if c.limit <= 0 || !errors.Is(err, berrors.ErrMaxSizeReached) {
		return
	}
	room := c.room(exactRoom)
	c.mu.Lock()
	c.failed, c.roomThen, c.sizeThen = c.now(), room, size
	c.mu.Unlock()
}

// capRoom is the room a commit may still take under Options.MaxSize:
// bbolt's free pages (not those a reader may still see: bbolt hands them
// out only later) and the pages the file may still grow by. Far from the
// cap, when the file's length (never below the high-water mark) leaves
// farFromCap more than atLeast, it answers that lower bound without
// reading the meta page: 2 µs a Put rather than 10 (BenchmarkCapAdmit).
func (q *Queue) capRoom(atLeast int64) int64 {
	pageSize, alloc := int64(q.db.PageSize()), int64(q.db.AllocSize())
	free := int64(q.db.Stats().FreePageN) * pageSize
	if grow := growRoom(q.opts.MaxSize, q.fileSize(), pageSize, alloc); grow-farFromCap >= atLeast {
		return free + grow
	}
	return free + growRoom(q.opts.MaxSize, q.highWater(), pageSize, alloc)
}

// farFromCap is how much room beyond a message's makes capRoom answer
// from the file's length alone. Once a commit has failed at the cap the
// file is near it for good (it never shrinks), so the hold always
// compares rooms read from the meta page.
const farFromCap = 256 << 20

// exactRoom asks capRoom for the room read from the meta page.
const exactRoom = 1 << 62

// highWater is the end of the pages of the file in use or free, in bytes
// (bbolt's high-water mark): from the meta page of the last commit, read
// from the file (no transaction: it would wait for none, but bbolt counts
// it). Any doubt answers the file's size, which is never less.
func (q *Queue) highWater() int64 {
	f, err := os.Open(q.db.Path())
	if err != nil {
		return q.fileSize()
	}
	defer f.Close()
	m, pageSize, ok := readMeta(f) // freelist.go
	if !ok {
		return q.fileSize()
	}
	return int64(m.high) * pageSize
}

// fileSize is the database file's length.
func (q *Queue) fileSize() int64 {
	fi, err := os.Stat(q.db.Path())
	if err != nil {
		return 0
	}
	return fi.Size()
}

// growRoom is how many bytes of new pages bbolt allocates past the
// high-water mark high before the file would pass limit, as bbolt v1.5.0's
// DB.allocate decides (not on Windows): a run of pages reaching minsz
// bytes (one page more than its end) fails when the file would need to
// grow past limit for it, the file growing to the mmap size (a power of two
// from 32 KiB) while that is at most allocSize, else to minsz plus
// allocSize.
func growRoom(limit, high, pageSize, allocSize int64) int64 {
	if limit <= 0 {
		return 0
	}
	var end int64 // the largest minsz bbolt allows
	if p := int64(1) << (bits.Len64(uint64(limit)) - 1); p >= 32<<10 {
		end = min(p, allocSize) // the largest power of two up to limit
	}
	if limit-allocSize > allocSize {
		end = limit - allocSize
	}
	return max(0, pageSize*((end-high-pageSize)/pageSize))
}
