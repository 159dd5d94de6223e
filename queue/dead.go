package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// The operator's operations on dead letters: look one up, put recipients
// back into the queue (Requeue), or delete dead letters for good (Purge,
// DeleteDead).

// GetDead returns the dead letter of message id. For a record that does
// not decode it returns the stand-in ListDead shows (DeadLetter.Damaged)
// with an error matching ErrRecordDamaged.
func (q *Queue) GetDead(id string) (*DeadLetter, error) {
	var d *DeadLetter
	err := q.db.View(func(tx *bolt.Tx) error {
		var err error
		d, err = getDead(tx, id)
		if errors.Is(err, ErrRecordDamaged) {
			_, why := decodeDead(tx.Bucket(bucketDead).Get([]byte(id)))
			d = damagedDead(tx, []byte(id), why)
			q.damage.note(true, id)
		}
		return err
	})
	return d, err
}

func getDead(tx *bolt.Tx, id string) (*DeadLetter, error) {
	v := tx.Bucket(bucketDead).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("queue: dead letter %s: %w", id, ErrNotFound)
	}
	d, err := decodeDead(v)
	if err != nil {
		return nil, fmt.Errorf("queue: dead letter %s: %w: %w", id, ErrRecordDamaged, err)
	}
	return d, nil
}

func decodeDead(v []byte) (*DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(v, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// damagedDead is the stand-in ListDead and GetDead give for the dead
// letter of id whose record does not decode (err).
func damagedDead(tx *bolt.Tx, id []byte, err error) *DeadLetter {
	return &DeadLetter{ID: string(id), Created: idTime(string(id)), Size: bodySize(tx, string(id)), Damaged: err.Error()}
}

func putDead(tx *bolt.Tx, d *DeadLetter) error {
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketDead).Put([]byte(d.ID), v); err != nil {
		return err
	}
	return countDead(tx, d) // counters.go
}

// snapshot is the copy of m a dead letter keeps: as stored, but not leased.
func snapshot(m *Message) *Message {
	s := *m
	s.Recipients = slices.Clone(m.Recipients)
	s.History = slices.Clone(m.History)
	s.LeasedUntil = time.Time{}
	return &s
}

// Requeue puts the dead recipients of the named dead letters back into the
// queue, due now, like `postsuper -r`: their attempt counts start again from
// zero (and so does the message's lifetime, see Message.LifetimeStart),
// while the attempt history and the last reply are kept. Recipients already
// delivered are not sent again. With a non-zero class only the recipients
// whose last reply is in that class come back; a dead letter with none is
// reported as ErrNotFound. What is left of a dead letter stays dead.
func (q *Queue) Requeue(ids []string, class ReplyClass) ([]IDResult, error) {
	res, err := q.each("requeue", ids, func(tx *bolt.Tx, id string, now time.Time) error {
		return q.requeue(tx, id, class, now)
	})
	if err == nil {
		q.notify()
	}
	return res, err
}

// RequeueAll is Requeue for every dead letter with a recipient in class
// (every dead letter when class is zero), damaged ones aside. It reports
// only the dead letters it found; one whose message is being delivered
// right now is reported with ErrLeased.
//
// It goes through the dead letters retryAllBatch at a time, a commit each
// (as RetryAll does), so that many thousands of dead letters brought back
// after an outage are not one huge transaction; the batches committed
// stay requeued if a later one fails.
func (q *Queue) RequeueAll(class ReplyClass) ([]IDResult, error) {
	return q.requeueAll(class, retryAllBatch)
}

// requeueAll is RequeueAll reading batch dead letters a commit.
func (q *Queue) requeueAll(class ReplyClass, batch int) ([]IDResult, error) {
	now := q.opts.Now()
	var results []IDResult
	var after []byte
	for {
		var done []IDResult
		var last []byte
		err := q.commit.commit(func(tx *bolt.Tx) error {
			done, last = nil, nil // afresh each run: the committer may run this twice
			var ids []string
			ids, last = deadInClass(tx, class, after, batch)
			for _, id := range ids {
				err := q.requeue(tx, id, class, now)
				if err != nil && !perMessage(err) {
					return fmt.Errorf("%s: %w", id, err)
				}
				done = append(done, IDResult{ID: id, Err: err})
			}
			return nil
		})
		if err != nil {
			return results, fmt.Errorf("queue: requeue: %w", err)
		}
		results = append(results, done...)
		q.notify()
		if last == nil {
			return results, nil
		}
		after = last
	}
}

// deadInClass returns the IDs of the dead letters with a recipient in
// class among at most max after the key after (nil: from the first),
// damaged ones aside, and the last key read when more follow (nil at the
// end).
func deadInClass(tx *bolt.Tx, class ReplyClass, after []byte, max int) (ids []string, last []byte) {
	c := tx.Bucket(bucketDead).Cursor()
	k, v := c.First()
	if after != nil {
		if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	for n := 0; k != nil; k, v = c.Next() {
		if n == max {
			return ids, bytes.Clone(last)
		}
		n++
		last = k
		d, err := decodeDead(v)
		if err != nil {
			continue // damaged: it names no recipient to bring back
		}
		if len(class.recipients(d.Recipients)) > 0 {
			ids = append(ids, d.ID)
		}
	}
	return ids, nil
}

func (q *Queue) requeue(tx *bolt.Tx, id string, class ReplyClass, now time.Time) error {
	d, err := getDead(tx, id)
	if err != nil {
		return err
	}
	back := class.recipients(d.Recipients)
	if len(back) == 0 {
		return fmt.Errorf("queue: dead letter %s: no recipient with a reply in class %s: %w", id, class, ErrNotFound)
	}
	if !hasBody(tx, id) {
		return fmt.Errorf("queue: dead letter %s: body missing: %w", id, ErrNotFound)
	}
	m, live, err := requeueBase(tx, d)
	if err != nil {
		return err
	}
	if q.isLeased(m.ID) {
		return fmt.Errorf("queue: %s: %w", id, ErrLeased)
	}
	revive := func() {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.Status == StatusDead && slices.Contains(back, r.Address) {
				r.Status, r.Attempts, r.NextAttempt = StatusQueued, 0, time.Time{}
			}
		}
		m.NextAttempt, m.Requeued = now, now
	}
	if live {
		if err := q.reschedule(tx, m, revive); err != nil {
			return err
		}
	} else {
		m.Attempts, m.Held, m.HeldSince = 0, false, time.Time{}
		revive()
		if err := putMessage(tx, m); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSchedule).Put(scheduleKey(m.dueAt(), m.ID), nil); err != nil {
			return err
		}
	}
	d.Recipients = slices.DeleteFunc(d.Recipients, func(r Recipient) bool { return slices.Contains(back, r.Address) })
	if len(d.Recipients) == 0 {
		if err := tx.Bucket(bucketDead).Delete([]byte(id)); err != nil {
			return err
		}
		return uncountDead(tx, id) // counters.go
	}
	return putDead(tx, d)
}

// requeueBase is the message record a requeue starts from: the live one
// when recipients of the message are still queued, else the copy the dead
// letter kept, else (a dead letter older than that copy) one rebuilt from
// the dead letter, with only its dead recipients.
func requeueBase(tx *bolt.Tx, d *DeadLetter) (m *Message, live bool, err error) {
	if v := tx.Bucket(bucketMessages).Get([]byte(d.ID)); v != nil {
		m, err := decodeMessage(v)
		if err != nil {
			return nil, false, fmt.Errorf("message %s: %w: %w", d.ID, ErrRecordDamaged, err)
		}
		return withFlush(tx, m), true, nil // flush.go: where its schedule entry is
	}
	if d.Record != nil {
		return snapshot(d.Record), false, nil
	}
	m = &Message{
		ID: d.ID, From: d.From, Submitter: d.Submitter, Created: d.Created, Size: d.Size,
		Recipients: slices.Clone(d.Recipients),
	}
	// Such an old dead letter did not keep the SMTPUTF8 and 8BITMIME
	// flags; infer them as intake would have.
	m.UTF8 = !isASCII(m.From)
	for _, r := range m.Recipients {
		m.UTF8 = m.UTF8 || !isASCII(r.Address)
	}
	m.EightBit = bodyHas8Bit(tx, d.ID)
	return m, false, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func bodyHas8Bit(tx *bolt.Tx, id string) bool {
	for v := range chunks(tx, id) {
		if bytes.IndexFunc(v, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0 {
			return true
		}
	}
	return false
}

// PurgeDead deletes, for good, every dead letter that died at least
// olderThan ago (all of them when olderThan is zero, damaged ones too),
// and the bodies no queued message still needs. It returns how many it
// deleted.
func (q *Queue) PurgeDead(olderThan time.Duration) (int, error) {
	cutoff := q.opts.Now().Add(-olderThan)
	var n int
	err := q.commit.commitSpare(func(tx *bolt.Tx) error {
		var ids []string
		err := tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			d, err := decodeDead(v)
			switch {
			case err != nil && olderThan == 0:
				ids = append(ids, string(k)) // damaged: its age is unknown, so only "all" takes it
			case err == nil && !d.Died.After(cutoff):
				ids = append(ids, d.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := deleteDead(tx, id); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: purge dead letters: %w", err)
	}
	return n, nil
}

// DeleteDead deletes the named dead letters for good, and their bodies
// unless the message still has recipients in the queue.
func (q *Queue) DeleteDead(ids []string) ([]IDResult, error) {
	return q.each("delete dead letter", ids, func(tx *bolt.Tx, id string, _ time.Time) error {
		if tx.Bucket(bucketDead).Get([]byte(id)) == nil {
			return fmt.Errorf("queue: dead letter %s: %w", id, ErrNotFound)
		}
		return deleteDead(tx, id)
	})
}

func deleteDead(tx *bolt.Tx, id string) error {
	if err := tx.Bucket(bucketDead).Delete([]byte(id)); err != nil {
		return err
	}
	if err := uncountDead(tx, id); err != nil { // counters.go
		return err
	}
	if tx.Bucket(bucketMessages).Get([]byte(id)) != nil {
		return nil
	}
	return deleteBody(tx, id)
}
