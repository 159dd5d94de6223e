package queue

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The committer is relayq's group commit. Every change to the store is a
// function queued here; one goroutine runs as many queued functions as are
// waiting in a single bbolt read-write transaction and commits it once, so
// concurrent callers share bbolt's two fdatasyncs.
//
// Unlike bbolt's own Batch it waits for no timer: a lone caller is committed
// at once, and callers that arrive while a commit is in progress are all
// taken by the next one. Under load the batch grows by itself; at rest the
// latency is one commit.
//
// A change function may run more than once (see run), so it must only write
// to the transaction and to variables it sets afresh on each run; results
// may be used only after commit returns nil.
//
// A read is also run by the loop, once, in a read-only transaction between
// commits: it sees every change committed before it and none can commit
// while it runs, without costing a commit of its own. A read (Queue.Ping)
// runs after the batch it arrived with has committed, so it sees every
// change queued before it too. A lease (Queue.Lease) runs ahead of that
// batch instead, on what is committed already: a message committed by one
// commit is then leased, and sent, while the next one waits for the disk,
// rather than after it. Every commit wakes delivery (the wake hook) as
// soon as it is on disk, before its callers are answered.

type change struct {
	fn   func(*bolt.Tx) error
	done chan error
	read bool // run once in a read-only transaction, after the batch's commit
	// ahead makes a read run before the writes of its batch rather than
	// after their commit.
	ahead bool
	// spare marks a change that records an outcome or frees space: when it
	// fails for lack of room, the reserve (space.go) is given up for it.
	spare bool
	// outcome marks a change that nobody outside relayq waits for (an
	// attempt's outcome: the relay has answered already). A batch of
	// nothing else may wait a little for a change somebody does wait for,
	// to share its commit (linger).
	outcome bool
	// ends is the message whose lease the change ends (an outcome's):
	// once it has committed, the ended hook notes it, with the batch's
	// others.
	ends string
}

type committer struct {
	db       updater // livedb.go
	queue    chan change
	maxBatch int
	stop     chan struct{}
	stopped  chan struct{}

	// closing guards closed: commit holds it shared while it hands a
	// change to the loop, close holds it exclusively to set closed, so no
	// change can enter the queue after the loop's final drain.
	closing sync.RWMutex
	closed  bool

	commits atomic.Int64 // transactions committed
	changes atomic.Int64 // change functions committed

	// release frees the reserve (space.go) and reports whether it did; a
	// spare change that failed with ErrFull is then run once more.
	release func() bool
	// wake is called after every transaction that committed, before its
	// callers are answered: something may have become due (Queue.notify).
	wake func()
	// ended is called after a transaction that committed changes with
	// ends set, with those messages, before their callers are answered:
	// the in-flight journal (inflight.go) takes the lines of a batch's
	// outcomes in one write rather than a write per worker.
	ended func(ids []string)

	// lastWaited is when the loop last took a change that somebody waits
	// for (not an outcome; see linger). Only the loop uses it.
	lastWaited time.Time
	// lingerMax is how long linger holds back a batch of outcomes at most.
	lingerMax time.Duration
}

func newCommitter(db updater, maxBatch int, release func() bool, wake func(), ended func([]string)) *committer {
	c := &committer{
		db:        db,
		queue:     make(chan change, maxBatch),
		maxBatch:  maxBatch,
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
		release:   release,
		wake:      wake,
		ended:     ended,
		lingerMax: lingerMax,
	}
	go c.loop()
	return c
}

// commit runs fn in a shared read-write transaction and returns once that
// transaction has committed (or failed).
func (c *committer) commit(fn func(*bolt.Tx) error) error {
	return c.enqueue(change{fn: fn, done: make(chan error, 1)})
}

// commitSpare is commit for a change that must not wait for the disk to
// have room again: recording an attempt's outcome, deleting a message.
// If it fails for lack of room, the reserve is released and it is tried
// again.
func (c *committer) commitSpare(fn func(*bolt.Tx) error) error {
	return c.enqueue(change{fn: fn, done: make(chan error, 1), spare: true})
}

// commitOutcome is commit (commitSpare when spare) for an attempt's
// outcome, which ends the lease of message id: it may wait up to lingerMax
// for a change somebody waits for, to share its commit (linger).
func (c *committer) commitOutcome(fn func(*bolt.Tx) error, spare bool, id string) error {
	return c.enqueue(change{fn: fn, done: make(chan error, 1), spare: spare, outcome: true, ends: id})
}

// read runs fn in a read-only transaction in the loop, between commits, and
// returns its error. fn may change memory the change functions read: no
// change function runs at the same time.
func (c *committer) read(fn func(*bolt.Tx) error) error {
	return c.enqueue(change{fn: fn, done: make(chan error, 1), read: true})
}

// readAhead is read, except that fn runs before the changes queued with
// it are written rather than after their commit: it sees what was
// committed before, without waiting for a commit in progress to end and
// the next one too.
func (c *committer) readAhead(fn func(*bolt.Tx) error) error {
	return c.enqueue(change{fn: fn, done: make(chan error, 1), read: true, ahead: true})
}

func (c *committer) enqueue(ch change) error {
	c.closing.RLock()
	if c.closed {
		c.closing.RUnlock()
		return ErrClosed
	}
	c.queue <- ch // the loop runs until close, so this cannot block for ever
	c.closing.RUnlock()
	return <-ch.done
}

// close stops the loop after the changes already queued are committed;
// commit calls that come later return ErrClosed.
func (c *committer) close() {
	c.closing.Lock()
	if c.closed {
		c.closing.Unlock()
		<-c.stopped
		return
	}
	c.closed = true
	c.closing.Unlock()
	close(c.stop)
	<-c.stopped
}

func (c *committer) loop() {
	defer close(c.stopped)
	batch := make([]change, 0, c.maxBatch)
	for {
		select {
		case ch := <-c.queue:
			batch = append(batch[:0], ch)
		case <-c.stop:
			c.drain(batch[:0])
			return
		}
		batch = c.linger(c.fill(batch))
		c.run(batch)
		clear(batch) // keep no caller's closure (a Put's body) alive until the next batch
	}
}

// linger holds back a batch of outcomes alone while intake is busy, for
// up to lingerMax, until a change somebody waits for (a Put) comes to
// share the commit, or a read. Under load a quarter of the commits carried
// outcomes only: each cost two fdatasyncs of its own, and a Put queued
// while it ran waited for it to end and for its own commit after it. The
// outcomes wait instead: nobody outside relayq does (their relay has
// answered), and the worker holds the lease meanwhile. When intake is
// quiet (no such change in lingerIdle) nothing lingers: a drain of the
// queue commits as before. Reads queued with the batch run first.
func (c *committer) linger(batch []change) []change {
	outcomes := 0
	for _, ch := range batch {
		switch {
		case ch.outcome:
			outcomes++
		case !ch.read:
			c.lastWaited = time.Now()
			return batch
		}
	}
	if outcomes == 0 || time.Since(c.lastWaited) > lingerIdle {
		return batch
	}
	batch = c.runAhead(batch)
	timer := time.NewTimer(c.lingerMax)
	defer timer.Stop()
	for len(batch) < c.maxBatch {
		select {
		case ch := <-c.queue:
			batch = append(batch, ch)
			if ch.outcome {
				continue
			}
			if !ch.read {
				c.lastWaited = time.Now()
			}
			return c.fill(batch)
		case <-timer.C:
			return batch
		case <-c.stop:
			return batch
		}
	}
	return batch
}

// How long a batch of outcomes alone waits at most for a change somebody
// waits for (linger; committer.lingerMax), and how recently such a change
// must have come for it to wait at all.
const (
	lingerMax  = time.Millisecond
	lingerIdle = 20 * time.Millisecond
)

// runAhead runs the batch's reads ahead (see run) and returns the rest.
func (c *committer) runAhead(batch []change) []change {
	var ahead []change
	rest := batch[:0]
	for _, ch := range batch {
		if ch.read && ch.ahead {
			ahead = append(ahead, ch)
		} else {
			rest = append(rest, ch)
		}
	}
	clear(batch[len(rest):])
	if len(ahead) > 0 {
		c.readAll(ahead)
	}
	return rest
}

// fill adds to batch what is queued. Callers whose last commit has just
// returned are usually runnable but not yet running; yielding the processor
// lets them queue their next change for this commit instead of the next
// one, which is the difference between a commit per change and a commit
// per burst on a machine with few cores. When nothing more arrives the
// batch goes at once.
func (c *committer) fill(batch []change) []change {
	for yields := 0; len(batch) < c.maxBatch; {
		select {
		case ch := <-c.queue:
			batch = append(batch, ch)
			continue
		default:
		}
		if yields == maxYields {
			return batch
		}
		yields++
		runtime.Gosched()
	}
	return batch
}

// maxYields bounds how often fill yields for latecomers: each yield costs a
// trip through the scheduler, a few microseconds, when nobody is waiting.
const maxYields = 2

// drain commits whatever is still queued when the store closes, so that no
// caller that got into the queue is left waiting.
func (c *committer) drain(batch []change) {
	for {
		select {
		case ch := <-c.queue:
			batch = append(batch, ch)
		default:
			if len(batch) > 0 {
				c.run(batch)
			}
			return
		}
	}
}

// run runs the batch's reads ahead, commits its changes in one
// transaction, then runs its other reads.
func (c *committer) run(batch []change) {
	var ahead, reads []change
	writes := batch[:0]
	for _, ch := range batch {
		switch {
		case ch.read && ch.ahead:
			ahead = append(ahead, ch)
		case ch.read:
			reads = append(reads, ch)
		default:
			writes = append(writes, ch)
		}
	}
	if len(ahead) > 0 {
		c.readAll(ahead)
	}
	if len(writes) > 0 {
		c.write(writes)
	}
	if len(reads) > 0 {
		c.readAll(reads)
	}
}

func (c *committer) readAll(reads []change) {
	var errs []error
	err := c.db.View(func(tx *bolt.Tx) error {
		for _, ch := range reads {
			errs = append(errs, ch.fn(tx))
		}
		return nil
	})
	for i, ch := range reads {
		if i < len(errs) {
			ch.done <- errs[i]
		} else {
			ch.done <- err // the transaction could not begin
		}
	}
}

// write commits the batch in one transaction. If any function fails, the
// transaction is rolled back and every function is run again in a
// transaction of its own, so that one failing change (or one too large for
// the space left) cannot fail the others.
func (c *committer) write(batch []change) {
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, ch := range batch {
			if err := ch.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		c.commits.Add(1)
		c.changes.Add(int64(len(batch)))
		c.woken()
		c.endLeases(batch)
		for _, ch := range batch {
			ch.done <- nil
		}
		return
	}
	if len(batch) == 1 {
		batch[0].done <- c.retrySpare(batch[0], fullErr(err))
		return
	}
	c.writeEach(batch)
}

// writeEach commits the changes of a batch that failed one at a time: the
// spare ones first (an outcome that must be recorded, a deletion that
// makes room), in their order, then the others. Once one of the others
// fails for lack of room, the rest of them are refused with ErrFull
// without a transaction of their own: a commit that fails for lack of
// room makes bbolt rebuild its free-page list by reading every page of
// the file (v1.5.0 with NoFreelistSync), seconds at a million messages
// with every other commit waiting, and on a full disk each of them would
// fail the same way.
func (c *committer) writeEach(batch []change) {
	var full error
	for _, spare := range []bool{true, false} {
		for _, ch := range batch {
			if ch.spare != spare {
				continue
			}
			if full != nil {
				ch.done <- full
				continue
			}
			err := c.retrySpare(ch, c.writeOne(ch))
			if !spare && errors.Is(err, ErrFull) {
				full = err
			}
			ch.done <- err
		}
	}
}

// writeOne commits one change in a transaction of its own.
func (c *committer) writeOne(ch change) error {
	err := c.db.Update(ch.fn)
	if err == nil {
		c.commits.Add(1)
		c.changes.Add(1)
		c.woken()
		c.endLeases([]change{ch})
	}
	return fullErr(err)
}

// endLeases calls the ended hook, if any, with the leases that committed
// changes end.
func (c *committer) endLeases(committed []change) {
	if c.ended == nil {
		return
	}
	var ids []string
	for _, ch := range committed {
		if ch.ends != "" {
			ids = append(ids, ch.ends)
		}
	}
	if len(ids) > 0 {
		c.ended(ids)
	}
}

// woken calls the wake hook, if any, after a commit.
func (c *committer) woken() {
	if c.wake != nil {
		c.wake()
	}
}

// retrySpare runs a spare change once more after releasing the reserve,
// if err says it failed for lack of room and there was a reserve to give.
func (c *committer) retrySpare(ch change, err error) error {
	if !ch.spare || !errors.Is(err, ErrFull) || c.release == nil || !c.release() {
		return err
	}
	return c.writeOne(ch)
}
