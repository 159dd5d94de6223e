package queue

import (
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// State is where a queued message as a whole stands, for listings.
type State string

const (
	// StateQueued: no pending recipient has been tried yet.
	StateQueued State = "queued"
	// StateDeferred: tried, failed temporarily, waiting for its next attempt.
	StateDeferred State = "deferred"
	// StateHeld: put on hold by an operator; not delivered until released.
	StateHeld State = "held"
	// StateActive: a worker is delivering it now.
	StateActive State = "active"
	// StateUncertain: a pending recipient is StatusUncertain (maybe
	// delivered); waiting for its next attempt.
	StateUncertain State = "uncertain"
	// StateDamaged: the record does not decode. It is never delivered;
	// an operator can delete or expire it (`relayq queue check` says
	// more).
	StateDamaged State = "damaged"
)

// ParseState checks a state name given on a command line.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case StateQueued, StateDeferred, StateHeld, StateActive, StateUncertain, StateDamaged:
		return st, nil
	}
	return "", fmt.Errorf("queue: unknown state %q (queued, deferred, uncertain, held, active or damaged)", s)
}

// State returns the message's state. Damaged (a stand-in for a record
// that does not decode) wins over everything, then held, then active
// (leased), then uncertain (a pending recipient may have been delivered),
// then deferred (a pending recipient was tried).
func (m *Message) State() State {
	switch {
	case m.Damaged != "":
		return StateDamaged
	case m.Held:
		return StateHeld
	case !m.LeasedUntil.IsZero():
		return StateActive
	case m.uncertain():
		return StateUncertain
	case m.tried():
		return StateDeferred
	}
	return StateQueued
}

// uncertain reports whether a recipient may have been delivered.
func (m *Message) uncertain() bool {
	for _, r := range m.Recipients {
		if r.Status == StatusUncertain {
			return true
		}
	}
	return false
}

// tried reports whether a pending recipient has had an attempt.
func (m *Message) tried() bool {
	for _, r := range m.Recipients {
		if r.Status.Pending() && r.Attempts > 0 {
			return true
		}
	}
	return false
}

// LifetimeStart is when the message's time in the queue began, for expiry
// and for the age health checks look at: when it was created, or when an
// operator last requeued it from the dead letters.
func (m *Message) LifetimeStart() time.Time {
	if m.Requeued.After(m.Created) {
		return m.Requeued
	}
	return m.Created
}

// Summary is the state of the store at a glance, for `relayq status`.
type Summary struct {
	Queued, Deferred, Held, Active, Uncertain int
	// Damaged counts message records that do not decode (StateDamaged).
	Damaged int
	// Oldest is the creation time of the oldest queued message; zero when
	// the queue is empty.
	Oldest time.Time
	// OldestDeferred is the LifetimeStart of the oldest message, held ones
	// aside, that was tried and is still not delivered; zero when none.
	OldestDeferred time.Time
	Dead           int
	// DamagedDead counts the dead letters (among Dead) whose record does
	// not decode.
	DamagedDead int
	// DeadSince counts dead letters whose last recipient died at or after
	// the time given to Summarize.
	DeadSince int
	// FileSize is the size of the database file in bytes.
	FileSize int64
}

// Summarize counts messages by state and dead letters, the latter also
// since deadSince. It reads every record: it is meant for an operator's
// command, not for a hot path.
func (q *Queue) Summarize(deadSince time.Time) (Summary, error) {
	var s Summary
	err := q.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
			m, err := decodeMessage(v)
			if err != nil {
				s.Damaged++ // counted, not fatal: `queue check` says more
				return nil
			}
			s.add(q.leasedUntil(m))
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			s.Dead++
			d, err := decodeDead(v)
			if err != nil {
				s.DamagedDead++
				return nil
			}
			if !d.Died.Before(deadSince) {
				s.DeadSince++
			}
			return nil
		})
	})
	if err != nil {
		return Summary{}, fmt.Errorf("queue: summarize: %w", err)
	}
	if fi, err := os.Stat(q.Path()); err == nil {
		s.FileSize = fi.Size()
	}
	return s, nil
}

func (s *Summary) add(m *Message) {
	switch m.State() {
	case StateQueued:
		s.Queued++
	case StateDeferred:
		s.Deferred++
	case StateHeld:
		s.Held++
	case StateActive:
		s.Active++
	case StateUncertain:
		s.Uncertain++
	}
	if s.Oldest.IsZero() || m.Created.Before(s.Oldest) {
		s.Oldest = m.Created
	}
	if !m.Held && m.tried() {
		if start := m.LifetimeStart(); s.OldestDeferred.IsZero() || start.Before(s.OldestDeferred) {
			s.OldestDeferred = start
		}
	}
}
