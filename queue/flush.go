package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// `relayq flush` (RetryAll) with a million messages queued. Retry rewrites
// each record it makes due (its next attempt, its recipients' next
// attempts): 23–26 s at a million, close to the client's 30 s timeout.
// RetryAll instead moves schedule keys only, and notes in the "flushed"
// bucket (id → the flush's time, 8 bytes) that the record is due earlier
// than it says. Whoever reads the record (getMessage, the listings, Check)
// sees it as Retry would have left it (withFlush); the next time the record
// is written (putMessage) or the message leaves the queue, the note goes.
//
// The bucket is made by the first flush; a file without it has no notes.

var bucketFlushed = []byte("flushed")

// withFlush applies to m, read from tx, the flush noted for it, if any.
func withFlush(tx *bolt.Tx, m *Message) *Message {
	if at, ok := flushedAt(tx, m.ID); ok {
		retryAt(m, at)
	}
	return m
}

// flushedAt returns the time of the flush noted for id.
func flushedAt(tx *bolt.Tx, id string) (time.Time, bool) {
	b := tx.Bucket(bucketFlushed)
	if b == nil {
		return time.Time{}, false
	}
	v := b.Get([]byte(id))
	if len(v) != 8 {
		return time.Time{}, false // none; or damaged, which Check reports
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), true
}

// unflush drops the flush noted for id: its record now says when it is due,
// or it has left the queue.
func unflush(tx *bolt.Tx, id string) error {
	b := tx.Bucket(bucketFlushed)
	if b == nil {
		return nil
	}
	return b.Delete([]byte(id))
}

// retryAt makes m due at at, as Retry does at now: every pending recipient
// with a next attempt of its own gets at too.
func retryAt(m *Message, at time.Time) {
	for i := range m.Recipients {
		if r := &m.Recipients[i]; r.Status.Pending() && !r.NextAttempt.IsZero() {
			r.NextAttempt = at
		}
	}
	m.NextAttempt = at
}

// RetryAll is Retry for every message that is neither held nor being
// delivered (`postqueue -f`), and returns how many are due now. Only the
// schedule entries due later move (retryAllBatch of them a commit, so that
// a queue of a million messages is never one huge transaction); no record
// is rewritten: 1M queued took 23–26 s when each was.
func (q *Queue) RetryAll() (int, error) {
	return q.retryAll(retryAllBatch)
}

// retryAll is RetryAll moving batch entries a commit.
func (q *Queue) retryAll(batch int) (int, error) {
	now := q.opts.Now()
	due, err := q.countDue(now)
	if err != nil {
		return 0, fmt.Errorf("queue: retry all: %w", err)
	}
	from := scheduleKey(now.Add(time.Nanosecond), "") // the first key due later
	for {
		var moved int
		var last []byte
		err := q.commit.commit(func(tx *bolt.Tx) error {
			moved, last = 0, nil // afresh each run: the committer may run this twice
			var err error
			moved, last, err = q.flushBatch(tx, from, now, batch)
			return err
		})
		if err != nil {
			return due, fmt.Errorf("queue: retry all: %w", err)
		}
		due += moved
		q.notify()
		if last == nil {
			return due, nil
		}
		from = last
	}
}

// retryAllBatch is how many schedule entries one commit of RetryAll moves.
const retryAllBatch = 5000

// flushBatch moves up to batch schedule entries from the key from on (all
// due after now) to now, noting each flush. It returns how many it moved,
// and the key the next batch starts at (nil when none is left).
func (q *Queue) flushBatch(tx *bolt.Tx, from []byte, now time.Time, batch int) (int, []byte, error) {
	sched := tx.Bucket(bucketSchedule)
	sched.FillPercent = appendFill // the keys moved go at now, in ID order
	var keys [][]byte
	c := sched.Cursor()
	k, _ := c.Seek(from)
	for ; k != nil && len(keys) < batch; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k)) // collected first: the bucket changes below
	}
	var next []byte
	if k != nil {
		next = bytes.Clone(k)
	}
	flushed, err := tx.CreateBucketIfNotExists(bucketFlushed)
	if err != nil {
		return 0, nil, err
	}
	at := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	moved := 0
	for _, k := range keys {
		_, id, ok := splitTimeKey(k)
		if !ok || q.leases.heldAt(id, now) {
			continue // damaged (Check names it); or its worker reschedules it
		}
		if err := sched.Delete(k); err != nil {
			return 0, nil, err
		}
		if err := sched.Put(scheduleKey(now, string(id)), nil); err != nil {
			return 0, nil, err
		}
		if err := flushed.Put(id, at); err != nil {
			return 0, nil, err
		}
		moved++
	}
	return moved, next, nil
}

// countDue counts the schedule entries due at now that no worker holds:
// the messages RetryAll finds due already.
func (q *Queue) countDue(now time.Time) (int, error) {
	n := 0
	err := q.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSchedule).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			at, id, ok := splitTimeKey(k)
			if !ok {
				continue
			}
			if at.After(now) {
				return nil
			}
			if !q.leases.heldAt(id, now) {
				n++
			}
		}
		return nil
	})
	return n, err
}

// checkFlushed names every flush note whose message is gone or held, or
// that does not hold a time: the schedule and the records disagree there.
func checkFlushed(tx *bolt.Tx) []error {
	b := tx.Bucket(bucketFlushed)
	if b == nil {
		return nil
	}
	var problems []error
	messages := tx.Bucket(bucketMessages)
	_ = b.ForEach(func(k, v []byte) error {
		switch m := messages.Get(k); {
		case len(v) != 8:
			problems = append(problems, fmt.Errorf("flush of %s: damaged (%d bytes, want 8)", k, len(v)))
		case m == nil:
			problems = append(problems, fmt.Errorf("flush of %s: no such message", k))
		}
		return nil
	})
	return problems
}
