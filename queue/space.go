package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Headroom on the queue's file system, as Postfix's queue_minfree keeps it.
// A queue that takes mail until the disk is full can no longer record what
// became of the mail it holds: recording an outcome, deleting a delivered
// message and moving one to the dead letters all commit, and a bbolt commit
// writes new pages (copy on write) before it frees the old ones. So:
//
//   - Put refuses (ErrFull, intake's 452 4.3.1) while the file system has
//     less than Options.MinFree free (statfs, checked at each Put), so the
//     queue's own intake never takes the last of the space. The free pages
//     inside the database file count as free: the file shrinks only when
//     it is compacted (compact_live.go, `relayq compact`), so once the
//     queue drains the room is there, inside it;
//   - a reserve file next to the database (<file>.reserve, up to
//     maxReserve, allocated with fallocate) holds space that something else
//     filling the disk cannot take. When a change that frees space or
//     records an outcome fails for lack of room, the reserve is deleted and
//     the change tried again in the room it leaves (committer.go). While
//     the reserve is gone Put wants its size free on top of MinFree; it
//     is allocated again once the file system has room for it.
//
// MinFree 0 turns both off.

// reserveSuffix names the reserve file after the database file.
const reserveSuffix = ".reserve"

// maxReserve caps the reserve; it is MinFree/2 below that.
const maxReserve = 8 << 20

// spaceInterval is how often a released reserve is looked at again.
const spaceInterval = time.Second

// fullHold is how long Put refuses at once after a message did not fit
// while the file system is below MinFree. The free pages inside the file
// count as room, but a body needs runs of them, which a file fragmented by
// recording attempts may not have; so rather than let every submission
// send its body to be refused at the commit, intake says 452 at MAIL for a
// while, and then lets one try.
const fullHold = 5 * time.Second

// Space is the state of the queue's file system, for `relayq status`.
type Space struct {
	Free     int64 // bytes free on the file system for the daemon's user (statfs f_bavail)
	FileFree int64 // bytes in free pages inside the database file
	MinFree  int64 // Options.MinFree; 0: no headroom kept
	Reserve  int64 // bytes the reserve file holds now; 0 when released
	// Refusing says that Put refuses new messages for lack of room.
	Refusing bool
	Err      error // statfs failed; Free is then unknown
}

type space struct {
	dir         string // the database's directory
	path        string // the reserve file
	minFree     int64
	reserveSize int64
	fileFree    func() int64 // free pages inside the database file, in bytes

	mu       sync.Mutex
	reserved bool      // the reserve file is allocated
	lastFull time.Time // when a new message last did not fit (noteFull)
	// The last statfs (fsFree): its answer, when, and the bytes of the
	// messages put since.
	freeAt    time.Time
	freeBytes int64
	usedSince int64
}

// A statfs at every MAIL and every Put cost 1.5–2% of the daemon's CPU
// under load. So while the file system is far from the headroom (free
// space above farFromHeadroom times what Put needs) its answer is used for
// up to freshFor, less the bytes of the messages put since; near the
// headroom every call asks the kernel again.
const (
	freshFor        = 100 * time.Millisecond
	farFromHeadroom = 4
)

func newSpace(dbPath string, minFree int64, fileFree func() int64) *space {
	return &space{
		dir:         filepath.Dir(dbPath),
		path:        dbPath + reserveSuffix,
		minFree:     minFree,
		reserveSize: min(minFree/2, maxReserve),
		fileFree:    fileFree,
	}
}

// FreeSpace reports the bytes free to an unprivileged writer on the file
// system holding dir.
func FreeSpace(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("queue: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// fsFree is the file system's free space: FreeSpace, or while far from
// the headroom, a recent answer of it less what was put since.
func (s *space) fsFree() (int64, error) {
	s.mu.Lock()
	estimate := s.freeBytes - s.usedSince
	fresh := time.Since(s.freeAt) < freshFor && estimate > farFromHeadroom*s.need(s.reserved)
	s.mu.Unlock()
	if fresh {
		return estimate, nil
	}
	free, err := FreeSpace(s.dir)
	if err == nil {
		s.mu.Lock()
		s.freeAt, s.freeBytes, s.usedSince = time.Now(), free, 0
		s.mu.Unlock()
	}
	return free, err
}

// used notes n bytes written since the last statfs (fsFree).
func (s *space) used(n int64) {
	s.mu.Lock()
	s.usedSince += n
	s.mu.Unlock()
}

// status reports the file system's free space and whether Put refuses.
func (s *space) status() Space {
	out := Space{MinFree: s.minFree, FileFree: s.fileFree()}
	out.Free, out.Err = s.fsFree()
	if s.minFree <= 0 {
		return out
	}
	s.mu.Lock()
	reserved, lastFull := s.reserved, s.lastFull
	s.mu.Unlock()
	if reserved {
		out.Reserve = s.reserveSize
	}
	didNotFit := time.Since(lastFull) < fullHold && out.Free < s.minFree
	out.Refusing = out.Err == nil && (out.room() < s.need(reserved) || didNotFit)
	return out
}

// noteFull records that a new message did not fit (its commit failed with
// ErrFull).
func (s *space) noteFull() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastFull = time.Now()
}

// need is the room below which Put refuses: MinFree, and the reserve's
// size too while it is not allocated (given up to a record, or no room on
// the file system to allocate it, the queue file's free pages standing in
// for it).
func (s *space) need(reserved bool) int64 {
	if reserved {
		return s.minFree
	}
	return s.minFree + s.reserveSize
}

// room is what a new message may use: the file system's free space and the
// free pages inside the database file.
func (s Space) room() int64 { return s.Free + s.FileFree }

// admit returns ErrFull when a new message must be refused for lack of room.
func (s *space) admit() error {
	if s.minFree <= 0 {
		return nil
	}
	if _, err := s.restore(); err != nil { // intake resumes as soon as there is room
		return fmt.Errorf("%w: %v", ErrFull, err)
	}
	st := s.status()
	switch {
	case st.Err != nil:
		return nil // cannot tell; the commit itself will say
	case st.Refusing && st.Reserve == 0:
		return fmt.Errorf("%w: %d bytes free (%d of them inside the queue file), below min_free (%d) and the reserve (%d), which is used up", ErrFull, st.room(), st.FileFree, s.minFree, s.reserveSize)
	case st.Refusing && st.room() < s.minFree:
		return fmt.Errorf("%w: %d bytes free (%d of them inside the queue file), below min_free (%d)", ErrFull, st.room(), st.FileFree, s.minFree)
	case st.Refusing:
		return fmt.Errorf("%w: the last message did not fit, with %d bytes free on the file system, below min_free (%d)", ErrFull, st.Free, s.minFree)
	}
	return nil
}

// release deletes the reserve file; it reports whether there was one to
// delete, that is whether a change that failed for lack of room may now fit.
func (s *space) release() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.reserved {
		return false
	}
	s.reserved = false
	err := os.Remove(s.path)
	return err == nil || errors.Is(err, os.ErrNotExist)
}

// restore allocates the reserve file if it is missing and there is room
// for it and MinFree besides; it reports whether it did.
func (s *space) restore() (bool, error) {
	if s.reserveSize <= 0 {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserved {
		return false, nil
	}
	free, err := FreeSpace(s.dir)
	if err != nil {
		return false, err
	}
	// The file system must have room for the reserve and as much again,
	// and with the database's own free pages, for the reserve and MinFree.
	have := existingSize(s.path)
	if free+have < 2*s.reserveSize || free+have+s.fileFree() < s.minFree+s.reserveSize {
		return false, nil
	}
	if err := allocate(s.path, s.reserveSize); err != nil {
		os.Remove(s.path)
		return false, fmt.Errorf("queue: reserve %s: %w", s.path, err)
	}
	s.reserved = true
	return true, nil
}

// existingSize is the space a file at path takes up now (a reserve left by
// the last run counts as free: allocating it again reuses it).
func existingSize(path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// allocate makes path a file of size bytes whose blocks are allocated, so
// that deleting it gives them back to the file system.
func allocate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	err = fallocate(f, size, false)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, errors.ErrUnsupported) {
		err = writeZeros(f, size)
	}
	if err != nil {
		return err
	}
	return f.Sync()
}

func writeZeros(f *os.File, size int64) error {
	zeros := make([]byte, 64<<10)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// Room returns ErrFull (with the cause) when Put would refuse a new
// message for lack of room right now, so that intake can say so before
// the message is sent (MAIL FROM).
func (q *Queue) Room() error {
	if err := q.space.admit(); err != nil {
		return err
	}
	return q.cap.admit(0) // sizecap.go
}

// Space reports the queue's file system: free space, the headroom kept and
// whether new messages are refused for lack of room.
func (q *Queue) Space() Space { return q.space.status() }

// spaceLoop allocates the reserve again, every spaceInterval, once it was
// released and there is room for it.
func (q *Queue) spaceLoop(stop <-chan struct{}) {
	ticker := time.NewTicker(spaceInterval)
	defer ticker.Stop()
	var last string
	for {
		made, err := q.space.restore()
		switch {
		case err != nil && err.Error() != last:
			q.log.Warn("cannot allocate the queue's reserve; intake stays refused", "err", err)
			last = err.Error()
		case made:
			q.log.Info("space reserved for recording deliveries; intake resumes", "path", q.space.path, "bytes", q.space.reserveSize)
			last = ""
		}
		select {
		case <-ticker.C:
		case <-stop:
			return
		}
	}
}

// releaseReserve gives the reserve up to a change that failed for lack of
// room (committer.retrySpare); it reports whether there was one.
func (q *Queue) releaseReserve() bool {
	if !q.space.release() {
		return false
	}
	q.log.Warn("queue file system full: reserve released to record deliveries; intake refused until there is room again", "path", q.space.path)
	return true
}
