package queue

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// liveDB is the open bbolt file of a Queue, which online compaction
// (compact_live.go) replaces with a smaller copy while relayq runs. Every
// use of the file goes through it: a transaction, and bbolt's statistics,
// hold its lock shared, so the file cannot change under them.
//
// The swap takes the lock exclusively with TryLock only, never Lock: a
// waiting Lock would make every new reader wait behind it, and a reader
// that nests (a View inside a View, Stats inside a transaction) would
// then deadlock. With TryLock a reader never waits for the swap; the swap
// waits for a moment with no transaction open, which a queue that has just
// drained has plenty of.
type liveDB struct {
	mu   sync.RWMutex
	db   *bolt.DB
	path string // the file's name; bbolt's own Path is the copy's temporary name after a swap
}

func newLiveDB(db *bolt.DB, path string) *liveDB {
	return &liveDB{db: db, path: path}
}

// View runs fn in a read-only transaction of the current file.
func (l *liveDB) View(fn func(*bolt.Tx) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.db.View(fn)
}

// Update runs fn in a read-write transaction of the current file.
func (l *liveDB) Update(fn func(*bolt.Tx) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.db.Update(fn)
}

// Stats is bbolt's statistics of the current file (counted since it was
// opened: a swap starts them again).
func (l *liveDB) Stats() bolt.Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.db.Stats()
}

// PageSize is the file's page size.
func (l *liveDB) PageSize() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.db.Info().PageSize
}

// AllocSize is how much bbolt grows the file by at once.
func (l *liveDB) AllocSize() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.db.AllocSize
}

// Path is the queue file's name.
func (l *liveDB) Path() string { return l.path }

// exclusive runs fn with the file to itself and returns true, when no
// transaction is open at that moment; otherwise it returns false at once.
// fn may replace the file (swap).
func (l *liveDB) exclusive(fn func()) bool {
	if !l.mu.TryLock() {
		return false
	}
	defer l.mu.Unlock()
	fn()
	return true
}

// raw is the current *bolt.DB, for what runs while nothing else can use
// the file: Open before the store is shared, Close after it stopped all.
func (l *liveDB) raw() *bolt.DB { return l.db }

// viewer is what reads the file: a liveDB, or a *bolt.DB that is not
// shared (maintenance, tests).
type viewer interface {
	View(fn func(*bolt.Tx) error) error
}

// updater is what reads and writes it: the committer's file.
type updater interface {
	viewer
	Update(fn func(*bolt.Tx) error) error
}
