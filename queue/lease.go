package queue

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Lease is a worker's hold on one due message. Only the holder of the
// current lease may record outcomes for it.
type Lease struct {
	*Message
	token uint64
}

// Lease takes up to max due messages (next attempt, or an expired lease, at
// or before now) and holds them for Options.LeaseTimeout. It returns none
// when nothing is due.
func (q *Queue) Lease(max int) ([]*Lease, error) {
	now := q.opts.Now()
	until := now.Add(q.opts.LeaseTimeout)
	var leases []*Lease
	err := q.commit.commit(func(tx *bolt.Tx) error {
		leases = leases[:0]
		var due [][]byte
		c := tx.Bucket(bucketSchedule).Cursor()
		for k, _ := c.First(); k != nil && len(due) < max && !scheduleTime(k).After(now); k, _ = c.Next() {
			due = append(due, append([]byte(nil), k[8:]...))
		}
		for _, id := range due {
			m, err := getMessage(tx, string(id))
			if err != nil {
				return err
			}
			token := q.nextToken()
			if err := q.reschedule(tx, m, func() { m.LeasedUntil, m.leaseToken = until, token }); err != nil {
				return err
			}
			leases = append(leases, &Lease{Message: m, token: token})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: lease: %w", err)
	}
	return leases, nil
}

func (q *Queue) nextToken() uint64 {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	q.leaseSeq++
	return q.leaseSeq
}

// Release gives a leased message back without an attempt (shutdown): it is
// due again at the next attempt time it had.
func (q *Queue) Release(l *Lease) error {
	err := q.commit.commit(func(tx *bolt.Tx) error {
		m, err := q.leased(tx, l)
		if err != nil {
			return err
		}
		return q.reschedule(tx, m, func() { m.LeasedUntil, m.leaseToken = time.Time{}, 0 })
	})
	if err != nil {
		return fmt.Errorf("queue: release %s: %w", l.ID, err)
	}
	q.notify()
	return nil
}

func (q *Queue) leased(tx *bolt.Tx, l *Lease) (*Message, error) {
	m, err := getMessage(tx, l.ID)
	if err != nil {
		return nil, ErrLeaseLost
	}
	if m.leaseToken != l.token {
		return nil, ErrLeaseLost
	}
	return m, nil
}

// Record stores the outcome of one delivery attempt of a leased message and
// ends the lease. Recipients not named in outcomes keep their state.
// Delivered recipients are done; Failed ones move to the dead letters with
// their reply; Deferred ones wait for their NextAttempt. When no recipient is
// left pending the message leaves the queue (its body stays while a dead
// letter needs it). It returns the message as recorded.
//
// Record adds the attempt to the message's history with no relay name or
// duration; RecordAttempt lets the caller supply them.
func (q *Queue) Record(l *Lease, outcomes []Outcome) (*Message, error) {
	return q.RecordAttempt(l, Attempt{}, outcomes)
}

// RecordAttempt is Record with the attempt's details (relay, duration,
// start) for the message's history; the per-recipient results in the
// history come from outcomes.
func (q *Queue) RecordAttempt(l *Lease, a Attempt, outcomes []Outcome) (*Message, error) {
	now := q.opts.Now()
	var result *Message
	err := q.commit.commit(func(tx *bolt.Tx) error {
		m, err := q.leased(tx, l)
		if err != nil {
			return err
		}
		m.History = appendHistory(m.History, newAttempt(a, outcomes, now))
		died := applyOutcomes(m, outcomes, now)
		if len(died) > 0 {
			if err := addDead(tx, m, died, now); err != nil {
				return err
			}
		}
		result = m
		if len(m.Pending()) == 0 {
			return q.remove(tx, m)
		}
		return q.reschedule(tx, m, func() {
			m.LeasedUntil, m.leaseToken = time.Time{}, 0
			m.NextAttempt = earliestAttempt(m)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: record %s: %w", l.ID, err)
	}
	q.notify()
	return result, nil
}

// applyOutcomes updates m's recipients and returns those that died.
func applyOutcomes(m *Message, outcomes []Outcome, now time.Time) []Recipient {
	var died []Recipient
	m.Attempts++
	for _, o := range outcomes {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.Address != o.Address || !r.Status.Pending() {
				continue
			}
			r.Attempts++
			r.LastAttempt = now
			r.LastReply = o.Reply
			switch o.Result {
			case Delivered:
				r.Status = StatusDelivered
				r.NextAttempt = time.Time{}
			case Failed:
				r.Status = StatusDead
				r.NextAttempt = time.Time{}
				died = append(died, *r)
			default:
				r.Status = StatusDeferred
				if o.Uncertain {
					r.Status = StatusUncertain
				}
				r.NextAttempt = o.NextAttempt
			}
		}
		if o.Hold && !m.Held {
			m.Held, m.HeldSince = true, now
		}
	}
	return died
}

func earliestAttempt(m *Message) time.Time {
	var t time.Time
	for _, r := range m.Pending() {
		next := r.NextAttempt
		if next.IsZero() {
			next = m.NextAttempt
		}
		if t.IsZero() || next.Before(t) {
			t = next
		}
	}
	return t
}

// addDead adds died to the dead letter of m, creating it if needed.
func addDead(tx *bolt.Tx, m *Message, died []Recipient, now time.Time) error {
	b := tx.Bucket(bucketDead)
	d := DeadLetter{ID: m.ID, From: m.From, Submitter: m.Submitter, Created: m.Created, Size: m.Size}
	if v := b.Get([]byte(m.ID)); v != nil {
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("dead letter %s: %w", m.ID, err)
		}
	}
	d.Recipients = append(d.Recipients, died...)
	d.Attempts = m.Attempts
	d.Died = now
	d.Record = snapshot(m)
	v, err := json.Marshal(&d)
	if err != nil {
		return err
	}
	return b.Put([]byte(m.ID), v)
}

// remove takes a finished message out of the queue, and its body too unless
// a dead letter still needs it. A record of what became of it stays in the
// archive (archive.go).
func (q *Queue) remove(tx *bolt.Tx, m *Message) error {
	if err := q.archive(tx, m, q.opts.Now()); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSchedule).Delete(scheduleKey(m.dueAt(), m.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketMessages).Delete([]byte(m.ID)); err != nil {
		return err
	}
	if tx.Bucket(bucketDead).Get([]byte(m.ID)) != nil {
		return nil
	}
	return deleteBody(tx, m.ID)
}
