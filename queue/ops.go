package queue

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The operator's operations on queued messages: hold, unhold, retry,
// delete, expire (dead.go has those on dead letters). Each takes a list of
// IDs and changes them all in one commit, reporting per ID what it did, the
// way postsuper does: an ID that is unknown, or a message a worker is
// delivering right now, is reported and left alone, and the others go
// ahead. None of them touches a body, except Delete, which removes it.

// IDResult is what an operator operation did to one message it named.
type IDResult struct {
	ID string
	// Err is nil when the operation was done (or there was nothing to
	// do, like holding a held message). Otherwise the message was left
	// as it was, and Err matches (errors.Is) ErrNotFound, ErrLeased,
	// ErrHeld or ErrRecordDamaged.
	Err error
}

// perMessage reports whether err concerns one message only, so that the
// other messages of the operation go ahead.
func perMessage(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrLeased) || errors.Is(err, ErrHeld) ||
		errors.Is(err, ErrNotHeld) || errors.Is(err, ErrRecordDamaged)
}

// each runs op for every id in one commit. op must check everything that
// can fail for one message before it writes anything for it.
func (q *Queue) each(name string, ids []string, op func(tx *bolt.Tx, id string, now time.Time) error) ([]IDResult, error) {
	now := q.opts.Now()
	var results []IDResult
	err := q.commit.commitSpare(func(tx *bolt.Tx) error {
		results = make([]IDResult, 0, len(ids)) // afresh: the committer may run this twice
		for _, id := range ids {
			err := op(tx, id, now)
			if err != nil && !perMessage(err) {
				return fmt.Errorf("%s: %w", id, err)
			}
			results = append(results, IDResult{ID: id, Err: err})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: %s: %w", name, err)
	}
	return results, nil
}

// unleased returns message id, or ErrLeased while a worker holds it.
func (q *Queue) unleased(tx *bolt.Tx, id string) (*Message, error) {
	m, err := getMessage(tx, id)
	if err != nil {
		return nil, err
	}
	if q.isLeased(id) {
		return nil, fmt.Errorf("queue: %s: %w", id, ErrLeased)
	}
	return m, nil
}

// Hold puts messages on hold: they leave the schedule, so no worker leases
// them until Unhold. The hold is stored in the record and survives
// restarts. Holding a held message does nothing.
func (q *Queue) Hold(ids []string) ([]IDResult, error) {
	return q.each("hold", ids, func(tx *bolt.Tx, id string, now time.Time) error {
		m, err := q.unleased(tx, id)
		if err != nil || m.Held {
			return err
		}
		return q.reschedule(tx, m, func() { m.Held, m.HeldSince = true, now })
	})
}

// Unhold releases held messages: they go back into the schedule at the
// next attempt time they had, so one whose time has passed is due at
// once. A message that is not held is reported with ErrNotHeld and left
// as it was.
func (q *Queue) Unhold(ids []string) ([]IDResult, error) {
	res, err := q.each("release", ids, func(tx *bolt.Tx, id string, _ time.Time) error {
		m, err := getMessage(tx, id)
		if err != nil {
			return err
		}
		if !m.Held {
			return fmt.Errorf("queue: %s: %w", id, ErrNotHeld)
		}
		return q.reschedule(tx, m, func() { m.Held, m.HeldSince = false, time.Time{} })
	})
	if err == nil {
		q.notify()
	}
	return res, err
}

// Retry makes messages due now, like `postqueue -i`: every pending
// recipient is tried at the next free worker, whatever its backoff said.
// The attempt counts stay (use Requeue on dead letters to reset them). A
// held message is reported with ErrHeld.
func (q *Queue) Retry(ids []string) ([]IDResult, error) {
	res, err := q.each("retry", ids, q.retry)
	if err == nil {
		q.notify()
	}
	return res, err
}

func (q *Queue) retry(tx *bolt.Tx, id string, now time.Time) error {
	m, err := q.unleased(tx, id)
	if err != nil {
		return err
	}
	if m.Held {
		return fmt.Errorf("queue: %s: %w", id, ErrHeld)
	}
	return q.reschedule(tx, m, func() { retryAt(m, now) }) // flush.go
}

// killPending marks every pending recipient of m dead, with the reply
// that reply gives it (from the recipient as it was), and returns them.
func killPending(m *Message, reply func(Recipient) *Reply) []Recipient {
	var died []Recipient
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if !r.Status.Pending() {
			continue
		}
		r.Status, r.NextAttempt, r.LastReply = StatusDead, time.Time{}, reply(*r)
		died = append(died, *r)
	}
	return died
}

// Delete removes messages from the queue for good: record, schedule entry
// and body. Recipients that already died stay in their dead letter, which
// keeps the body. A damaged record (one that does not decode) goes the
// same way.
func (q *Queue) Delete(ids []string) ([]IDResult, error) {
	return q.forgetLeft(q.each("delete", ids, func(tx *bolt.Tx, id string, now time.Time) error {
		m, err := q.unleased(tx, id)
		if errors.Is(err, ErrRecordDamaged) {
			return q.removeDamaged(tx, id, false, now)
		}
		if err != nil {
			return err
		}
		return q.remove(tx, m, storedTallyOf(tx, m.ID)) // counters.go
	}))
}

// forgetLeft has the store forget (Queue.left) the messages of res that
// left the queue.
func (q *Queue) forgetLeft(res []IDResult, err error) ([]IDResult, error) {
	for _, r := range res {
		if r.Err == nil {
			q.left(r.ID)
		}
	}
	return res, err
}

// ExpiredByOperator is the first line of the reply a recipient gets when
// an operator expires its message.
const ExpiredByOperator = "expired by operator"

// Expire dead-letters messages now: every pending recipient moves to the
// dead letters with the reply "expired by operator" (followed by the last
// reply it had), and the message leaves the queue; its body stays with the
// dead letter. A damaged record leaves the queue for a dead letter of
// reason ReasonDamaged, which keeps the body but knows no recipients.
func (q *Queue) Expire(ids []string) ([]IDResult, error) {
	return q.forgetLeft(q.each("expire", ids, func(tx *bolt.Tx, id string, now time.Time) error {
		m, err := q.unleased(tx, id)
		if errors.Is(err, ErrRecordDamaged) {
			return q.removeDamaged(tx, id, true, now)
		}
		if err != nil {
			return err
		}
		died := killPending(m, func(r Recipient) *Reply {
			reply := &Reply{Lines: []string{ExpiredByOperator}}
			if r.LastReply != nil {
				reply.Lines = append(reply.Lines, "last reply: "+r.LastReply.String())
			}
			return reply
		})
		if len(died) > 0 {
			if err := addDead(tx, m, died, now); err != nil {
				return err
			}
		}
		return q.remove(tx, m, storedTallyOf(tx, m.ID)) // counters.go
	}))
}
