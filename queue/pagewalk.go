package queue

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The walk of the file's pages after Open. Reading a damaged page trips an
// assertion in bbolt, a panic; in the goroutine that happened to read it
// (a worker, the committer) that would crash the daemon. Open used to walk
// every page before it opened the file, where the panic is caught and
// reported as ErrDamaged (openBolt). When Close saved the freelist
// (freelist.go), Open skips that walk and starts this one instead, which
// does the same reading in the background, a batch of keys per read
// transaction, while intake takes mail into the maildrop:
//
//   - Nothing else that reads the whole file starts before it has ended:
//     Lease waits for it (delivery starts once it is done, a few seconds
//     at a million messages), and so do the audit of the records, the
//     history pruner and the give-back of free pages.
//   - If it finds damage, Lease fails with ErrDamaged from then on, Close
//     saves no freelist (so the next Open walks the file first and refuses
//     it), and Damaged delivers the error (to a caller that did not
//     wait for Walked).
//
// relayq serve waits for the walk (Walked) before intake commits or the
// maildrop is imported: until then intake keeps what it takes in the
// maildrop, and damage the walk finds fails the start with exit 65. What
// the walk cannot guard: a damaged page that an operator's listing reads
// before the walk reaches it still panics there; the process stops, the freelist is not saved, and the next start walks
// the file first and refuses it (exit 65). No acknowledged message is lost
// by that: the commit that panicked never answered.

// pageWalk is the state of the walk after Open.
type pageWalk struct {
	done  chan struct{} // closed when the walk has ended, or was not needed
	err   error         // what it found; set before done is closed
	found chan error    // receives err once when it is damage
}

// walkedAlready is the pageWalk of an Open that walked the file first.
func walkedAlready() *pageWalk {
	w := &pageWalk{done: make(chan struct{}), found: make(chan error, 1)}
	close(w.done)
	return w
}

// wait returns once the walk has ended, with the damage it found.
func (w *pageWalk) wait() error {
	<-w.done
	return w.err
}

// finished reports whether the walk has ended (or was not needed).
func (w *pageWalk) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// damaged returns the damage the walk found, nil while it runs.
func (w *pageWalk) damaged() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Walked waits for the walk of the file's pages after Open to end (it
// returns at once when Open walked the file first) and returns the damage
// it found, an error matching ErrDamaged, or nil (also when Close stopped
// the walk). A commit reads pages too, and one that reads a damaged page
// panics in bbolt, where its rollback's rebuild of the freelist panics
// again beyond any recover: whoever must not crash on a damaged file
// commits only after Walked.
func (q *Queue) Walked() error {
	return q.pages.wait()
}

// Damaged returns a channel that receives an error matching ErrDamaged
// once, if the walk of the file's pages after Open finds a damaged page
// (pagewalk.go); nothing otherwise. Whoever runs the store should then stop
// using it and Close it.
func (q *Queue) Damaged() <-chan error {
	return q.pages.found
}

// walkPages reads every key of every bucket, walkBatch keys per read
// transaction, and then starts what waited for it (then). It stops early
// when stop is closed.
func (q *Queue) walkPages(stop <-chan struct{}, then func()) {
	w := q.pages
	defer close(w.done)
	start := time.Now()
	// Cold, the walk's reads in key order would be random reads of
	// the disk: read the file into the page cache in file order first,
	// as Open does before its walk (prefetch_linux.go).
	prefetch(q.db.Path())
	var names [][]byte
	err := readRecover(q.db, func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, bytes.Clone(name))
			return nil
		})
	})
	for _, name := range names {
		if err != nil {
			break
		}
		err = q.walkBucketInBatches(name, stop)
	}
	switch {
	case err == errStopped:
	case err != nil:
		w.err = err
		q.log.Error("the queue file is damaged: delivery does not start; run `relayq queue check`", "err", err)
		w.found <- err
	default:
		q.log.Info("queue file read through after start; delivery starts", "took", time.Since(start).Round(time.Millisecond))
		then()
	}
}

// errStopped ends a walk that Close interrupted.
var errStopped = errors.New("queue: walk stopped")

// walkBatch is how many keys of a bucket one read transaction of the walk
// reads (the keys of a nested bucket, a large body's chunks, are read with
// the key that holds it). Short transactions let commits reuse freed pages
// and remap the file while the walk goes on.
const walkBatch = 20000

func (q *Queue) walkBucketInBatches(name []byte, stop <-chan struct{}) error {
	var after []byte
	for {
		select {
		case <-stop:
			return errStopped
		default:
		}
		var last []byte
		err := readRecover(q.db, func(tx *bolt.Tx) error {
			b := tx.Bucket(name)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for n := 0; k != nil && n < walkBatch; k, v = c.Next() {
				if v == nil {
					if child := b.Bucket(k); child != nil {
						if err := walkBucket(child, func() {}); err != nil {
							return err
						}
					}
				}
				last = k
				n++
			}
			last = bytes.Clone(last)
			_ = dontNeed(tx.DB().Info().Data, tx.Size()) // mapped.go: what was read leaves the resident set
			return nil
		})
		if err != nil || last == nil {
			return err
		}
		after = last
	}
}

// readRecover runs fn in a read transaction, reporting a panic (bbolt's,
// on a damaged page) as ErrDamaged.
func readRecover(db viewer, fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	return db.View(fn)
}
