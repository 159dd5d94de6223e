package queue

import (
	"encoding/binary"
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
	// Damaged counts message records that do not decode (StateDamaged)
	// among those found so far (see DamageAudited).
	Damaged int
	// Pending counts the recipients still to be delivered, and Bytes the
	// sizes of the queued messages.
	Pending int
	Bytes   int64
	// Oldest is the creation time of the oldest queued message (the
	// first by ID: IDs sort by the time they were given); zero when the
	// queue is empty.
	Oldest time.Time
	// OldestDeferred is the LifetimeStart of the oldest message, held ones
	// aside, that was tried and is still not delivered; zero when none.
	OldestDeferred time.Time
	Dead           int
	// DamagedDead counts the dead letters (among Dead) whose record does
	// not decode, among those found so far.
	DamagedDead int
	// DeadSince counts dead letters whose last recipient died at or after
	// the time given to Summarize.
	DeadSince int
	// DamageAudited says that every record has been read once since Open
	// (counters.go), so that Damaged and DamagedDead count every damaged
	// record; before, only those found so far.
	DamageAudited bool
	// FileSize is the size of the database file in bytes.
	FileSize int64
}

// Summarize counts messages by state and dead letters, the latter also
// since deadSince. It reads the counters the store keeps (counters.go),
// the first message, the first entry of the deferred index, the deaths
// since deadSince, and the records of the messages leased or found
// damaged: its cost does not grow with the queue.
func (q *Queue) Summarize(deadSince time.Time) (Summary, error) {
	var s Summary
	select {
	case <-q.damage.audited:
		s.DamageAudited = true
	case <-time.After(10 * time.Millisecond): // a small queue's audit is done by then
	}
	err := q.db.View(func(tx *bolt.Tx) error {
		c, err := readCounts(tx)
		if err != nil {
			return err
		}
		var since int64 // deadSince before 1970 (the zero time): every death
		if deadSince.After(time.Unix(0, 0)) {
			since = deadSince.UnixNano()
		}
		cur := tx.Bucket(bucketDeaths).Cursor()
		for k, _ := cur.Seek(timeKey(since, "")); k != nil; k, _ = cur.Next() {
			s.DeadSince++
		}
		q.applyLeasesAndDamage(tx, &c, &s, since)
		s.Queued, s.Deferred = int(c.states[tallyQueued]), int(c.states[tallyDeferred])
		s.Held, s.Uncertain = int(c.states[tallyHeld]), int(c.states[tallyUncertain])
		s.Pending, s.Bytes, s.Dead = int(c.pending), c.bytes, int(c.dead)
		if k, v := tx.Bucket(bucketMessages).Cursor().First(); k != nil {
			s.Oldest = idTime(string(k))
			if m, err := decodeMessage(v); err == nil {
				s.Oldest = m.Created
			}
		}
		if k, _ := tx.Bucket(bucketDeferred).Cursor().First(); k != nil {
			s.OldestDeferred, _, _ = splitTimeKey(k)
		}
		return nil
	})
	if err != nil {
		return Summary{}, fmt.Errorf("queue: summarize: %w", err)
	}
	if fi, err := os.Stat(q.Path()); err == nil {
		s.FileSize = fi.Size()
	}
	return s, nil
}

// applyLeasesAndDamage moves, in c, the leased messages from their stored
// state to Active and the damaged ones to Damaged, and counts the damaged
// dead letters, which leave s.DeadSince (in UnixNano) as they did when
// every record was read. An ID noted damaged whose record is gone or
// reads again is dropped from the set.
func (q *Queue) applyLeasesAndDamage(tx *bolt.Tx, c *counts, s *Summary, since int64) {
	tallies, records := tx.Bucket(bucketTally), tx.Bucket(bucketMessages)
	uncount := func(id string) { // counters.go: what the counts take the record for
		if v := records.Get([]byte(id)); v != nil {
			c.states[recordTallyOrStandIn([]byte(id), v).state]--
		}
	}
	messages, dead := q.damage.snapshot()
	for _, id := range messages {
		v := tx.Bucket(bucketMessages).Get([]byte(id))
		if _, err := decodeMessage(v); v == nil || err == nil {
			q.damage.drop(false, id)
			continue
		}
		uncount(id)
		s.Damaged++
	}
	for _, id := range dead {
		v := tx.Bucket(bucketDead).Get([]byte(id))
		if _, err := decodeDead(v); v == nil || err == nil {
			q.damage.drop(true, id)
			continue
		}
		s.DamagedDead++
		if t := tallies.Get(tallyKey('d', id)); len(t) == 8 {
			if died := int64(binary.BigEndian.Uint64(t)); died != 0 && died >= since {
				s.DeadSince-- // its death is in the index, but the record says nothing
			}
		}
	}
	for _, id := range q.leases.active(q.opts.Now()) {
		uncount(id)
		s.Active++
	}
}
