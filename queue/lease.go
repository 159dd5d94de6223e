package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Lease is a worker's hold on one due message. Only the holder of the
// current lease may record outcomes for it.
type Lease struct {
	*Message
	// Interrupted says that the message was out for delivery when relayq
	// last stopped without recording how that went (kill -9, a crash):
	// the relay may have it already, and an attempt that delivers it may
	// deliver it twice. It stays set on every lease until the message
	// leaves the queue.
	Interrupted bool
	token       uint64
}

// Leases live in memory only. The database lock makes this process the
// store's only user, and a lease exists to keep two workers of this process
// apart; after a crash every lease is gone with the process, so the
// messages it held are simply due at their next attempt time, as they
// would be after a reclaim. Keeping them out of the file saves a commit
// (two fdatasyncs) per attempt and a scan of every record at start.
//
// Every lease is taken inside the committer's loop (committer.readAhead), between
// commits, so a lease is always taken on the latest committed state and an
// operator's change (Hold, Delete…), which checks for a lease inside its
// commit, can never race one.
type leaseTable struct {
	mu     sync.Mutex
	seq    uint64
	held   map[string]heldLease
	warned map[string]bool // messages already reported as unreadable, until they leave the queue (Queue.left)
}

type heldLease struct {
	token uint64
	until time.Time
}

// take gives id a new lease until until and returns its token.
func (t *leaseTable) take(id string, until time.Time) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	if t.held == nil {
		t.held = make(map[string]heldLease)
	}
	t.held[id] = heldLease{token: t.seq, until: until}
	return t.seq
}

// until reports when id's lease ends if it is held at now.
func (t *leaseTable) until(id string, now time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.held[id]
	if !ok || !h.until.After(now) {
		return time.Time{}, false
	}
	return h.until, true
}

// heldAt reports whether the message whose ID is the bytes id is leased at
// now; unlike until it does not copy id (Lease asks it of every due entry).
func (t *leaseTable) heldAt(id []byte, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.held[string(id)] // a map index: no copy
	return ok && h.until.After(now)
}

// holds reports whether token is id's current lease (expired or not: an
// expired lease is only lost once another worker takes the message).
func (t *leaseTable) holds(id string, token uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.held[id]
	return ok && h.token == token
}

// renew moves the end of lease token on id to until; it reports false when
// token is not id's current lease.
func (t *leaseTable) renew(id string, token uint64, until time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.held[id]
	if !ok || h.token != token {
		return false
	}
	t.held[id] = heldLease{token: token, until: until}
	return true
}

// drop ends the lease token on id, if it is still the current one.
func (t *leaseTable) drop(id string, token uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.held[id]; ok && h.token == token {
		delete(t.held, id)
	}
}

// active returns the IDs leased at now.
func (t *leaseTable) active(now time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []string
	for id, h := range t.held {
		if h.until.After(now) {
			ids = append(ids, id)
		}
	}
	return ids
}

// warnOnce reports whether id has not been warned about yet, and marks it.
func (t *leaseTable) warnOnce(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.warned[id] {
		return false
	}
	if t.warned == nil {
		t.warned = make(map[string]bool)
	}
	t.warned[id] = true
	return true
}

// forget drops id from the unreadable ones: the message has left the
// queue, and the set must not grow with every damaged record ever seen.
func (t *leaseTable) forget(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.warned, id)
}

// unreadable reports whether the message whose ID is the bytes id was
// found unreadable (warnOnce) by Lease, which skips it.
func (t *leaseTable) unreadable(id []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.warned[string(id)]
}

// leasedUntil fills in m.LeasedUntil from the lease table: records in the
// file never carry it.
func (q *Queue) leasedUntil(m *Message) *Message {
	m.LeasedUntil, _ = q.leases.until(m.ID, q.opts.Now())
	return m
}

// isLeased reports whether a worker holds id now.
func (q *Queue) isLeased(id string) bool {
	_, ok := q.leases.until(id, q.opts.Now())
	return ok
}

// Lease takes up to max due messages (next attempt at or before now, not
// held by another worker, or held by a lease that ran out) and holds them
// for Options.LeaseTimeout. It returns none when nothing is due. Taking a
// lease writes nothing to the file. After an Open that did not walk the
// file first it waits for the walk after Open (pagewalk.go), and fails
// with ErrDamaged if that found damage.
func (q *Queue) Lease(max int) ([]*Lease, error) {
	// After an Open that did not walk the file, nothing is leased before
	// the walk has read every page (pagewalk.go).
	if err := q.pages.wait(); err != nil {
		return nil, fmt.Errorf("queue: lease: %w", err)
	}
	now := q.opts.Now()
	until := now.Add(q.opts.LeaseTimeout)
	var leases []*Lease
	var stale [][]byte
	err := q.commit.readAhead(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSchedule).Cursor()
		for k, _ := c.First(); k != nil && len(leases) < max; k, _ = c.Next() {
			due, idb, ok := splitTimeKey(k)
			if !ok {
				q.skipDamagedKey(bucketSchedule, k)
				continue
			}
			if due.After(now) {
				break
			}
			if q.leases.heldAt(idb, now) || !q.stale.due(k, now) {
				continue
			}
			id := string(idb)
			m, err := getMessage(tx, id)
			if errors.Is(err, ErrNotFound) {
				q.stale.begin(k)
				stale = append(stale, bytes.Clone(k))
				continue
			}
			if err != nil {
				// One unreadable record must not stop the others;
				// `relayq queue check` reports it.
				q.damage.note(false, id) // for the summaries (counters.go)
				if q.leases.warnOnce(id) {
					q.log.Error("cannot read a due message; skipping it", "id", id, "err", err)
				}
				continue
			}
			m.LeasedUntil = until
			leases = append(leases, &Lease{Message: m, Interrupted: q.interrupted(id), token: q.leases.take(id, until)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: lease: %w", err)
	}
	if len(leases) > 0 {
		ids := make([]string, len(leases))
		for i, l := range leases {
			ids[i] = l.ID
		}
		q.inflight.begin(ids)
	}
	if len(stale) > 0 {
		go q.dropStaleSchedule(stale)
	}
	return leases, nil
}

// dropStaleSchedule deletes schedule entries whose message is gone, so that
// they stop being looked at. It runs outside the committer's loop (Lease
// runs inside it) and checks again in its own commit. While it runs, and
// for a while after it failed, Lease and NextDue pass the entries over
// (staleTable).
func (q *Queue) dropStaleSchedule(keys [][]byte) {
	err := q.commit.commitSpare(func(tx *bolt.Tx) error {
		var lost []string
		for _, k := range keys {
			if tx.Bucket(bucketMessages).Get(k[8:]) != nil {
				continue
			}
			if err := tx.Bucket(bucketSchedule).Delete(k); err != nil {
				return err
			}
			if err := unflush(tx, string(k[8:])); err != nil { // flush.go
				return err
			}
			lost = append(lost, string(k[8:]))
		}
		// The lost messages leave the counts too: they are exact
		// again (counters.go).
		return forgetLost(tx, lost)
	})
	switch {
	case errors.Is(err, ErrClosed):
	case err != nil:
		retry := q.stale.failed(keys, q.opts.Now())
		q.log.Error("cannot drop schedule entries of missing messages; trying again later",
			"count", len(keys), "retry", retry, "err", err)
	default:
		q.stale.dropped(keys)
		q.log.Warn("dropped schedule entries of missing messages", "count", len(keys))
	}
}

// Backoff of a drop of stale schedule entries that failed: the first retry
// after staleRetryMin, each next one after twice as long, up to
// staleRetryMax.
const (
	staleRetryMin = time.Second
	staleRetryMax = time.Minute
)

// staleTable holds the schedule entries whose message is missing while
// their drop (dropStaleSchedule) is under way or failed lately. Without
// it, a drop that keeps failing (a full disk, an I/O error) would be tried
// at every Lease, and NextDue would report the entries due in the past,
// waking delivery at once to lease nothing, again and again: a busy loop
// on a store error. An entry leaves it when its drop succeeds.
type staleTable struct {
	mu   sync.Mutex
	keys map[string]staleDrop
}

type staleDrop struct {
	retry time.Time     // when the drop may be tried again; zero while under way
	wait  time.Duration // the backoff after its next failure
}

// due reports whether Lease may look at schedule key k at now: it is not
// in the table, or its backoff has run out.
func (s *staleTable) due(k []byte, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.keys[string(k)]
	return !ok || !d.retry.IsZero() && !now.Before(d.retry)
}

// retryAt reports whether schedule key k is in the table, and when its
// drop is to be tried again (zero while it is under way).
func (s *staleTable) retryAt(k []byte) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.keys[string(k)]
	return d.retry, ok
}

// begin notes that a drop of k is under way.
func (s *staleTable) begin(k []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = make(map[string]staleDrop)
	}
	d := s.keys[string(k)]
	d.retry = time.Time{}
	s.keys[string(k)] = d
}

// failed starts (or lengthens) the backoff of keys after their drop
// failed at now, and returns when they are due again.
func (s *staleTable) failed(keys [][]byte, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var retry time.Time
	for _, k := range keys {
		d := s.keys[string(k)]
		d.wait = max(d.wait, staleRetryMin)
		d.retry, retry = now.Add(d.wait), now.Add(d.wait)
		d.wait = min(2*d.wait, staleRetryMax)
		s.keys[string(k)] = d
	}
	return retry
}

// dropped forgets keys, deleted from the schedule.
func (s *staleTable) dropped(keys [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.keys, string(k))
	}
}

// Release gives a leased message back without an attempt (shutdown): it is
// due again at the next attempt time it had.
func (q *Queue) Release(l *Lease) error {
	if !q.leases.holds(l.ID, l.token) {
		return fmt.Errorf("queue: release %s: %w", l.ID, ErrLeaseLost)
	}
	q.leases.drop(l.ID, l.token)
	q.inflight.end(l.ID)
	q.notify()
	return nil
}

// Renew extends l for another Options.LeaseTimeout from now, so that a
// worker that knows an attempt's outcome and cannot record it yet keeps
// the message from being leased (and sent) again. It fails with
// ErrLeaseLost when l is no longer the message's lease.
func (q *Queue) Renew(l *Lease) error {
	until := q.opts.Now().Add(q.opts.LeaseTimeout)
	if !q.leases.renew(l.ID, l.token, until) {
		return fmt.Errorf("queue: renew %s: %w", l.ID, ErrLeaseLost)
	}
	l.LeasedUntil = until
	return nil
}

// leased returns the stored message for l, or ErrLeaseLost when l is no
// longer its lease or the message is gone.
func (q *Queue) leased(tx *bolt.Tx, l *Lease) (*Message, error) {
	if !q.leases.holds(l.ID, l.token) {
		return nil, ErrLeaseLost
	}
	m, err := getMessage(tx, l.ID)
	if err != nil {
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
	return q.RecordParts(l, []Part{{Attempt: a, Outcomes: outcomes}})
}

// Part is what one transaction of an attempt did: a message whose
// recipients go to different relays is sent in parts, one per route, each
// with its own history entry (naming its relay) and outcomes.
type Part struct {
	Attempt  Attempt
	Outcomes []Outcome
}

// MustRecord reports whether losing the record of parts would send a
// message again or lose what the relay said for good: some recipient was
// delivered, failed for good, may have been delivered (uncertain) or is put
// on hold. The rest (deferrals, waits) only says "try again later", which
// the message's next lease does anyway. Only records that must be kept may
// use the space kept in reserve on a full disk.
func MustRecord(parts []Part) bool {
	for _, p := range parts {
		for _, o := range p.Outcomes {
			if o.Result == Delivered || o.Result == Failed || o.Uncertain || o.Hold {
				return true
			}
		}
	}
	return false
}

// RecordParts is RecordAttempt for an attempt sent in parts: one history
// entry per part that tried some recipient, the outcomes of all applied,
// and the message's attempt count raised once. A part whose outcomes all
// wait (Waiting) adds no history entry; when every part waits, the
// attempt is not counted at all.
func (q *Queue) RecordParts(l *Lease, parts []Part) (*Message, error) {
	now := q.opts.Now()
	var result *Message
	// The reserve is kept for outcomes that must not be lost: a deferral
	// that took it would leave none for the deliveries.
	spare := MustRecord(parts)
	err := q.commit.commitOutcome(func(tx *bolt.Tx) error {
		m, err := q.leased(tx, l)
		if err != nil {
			return err
		}
		before := readTally(m) // counters.go: what the counts hold of it, before it changes
		var all []Outcome
		tried := false
		for _, p := range parts {
			all = append(all, p.Outcomes...)
			if tries(p.Outcomes) {
				tried = true
				m.History = appendHistory(m.History, newAttempt(p.Attempt, triedOnly(p.Outcomes), now))
			}
		}
		if tried {
			m.Attempts++
		}
		died := applyOutcomes(m, all, now)
		if len(died) > 0 {
			if err := addDead(tx, m, died, now); err != nil {
				return err
			}
		}
		result = m
		if len(m.Pending()) == 0 {
			return q.remove(tx, m, before)
		}
		return q.rescheduleOver(tx, m, before, func() { m.NextAttempt = earliestAttempt(m) })
	}, spare, l.ID) // the journal's line for the lease's end is written as it commits
	if err != nil {
		return nil, fmt.Errorf("queue: record %s: %w", l.ID, err)
	}
	q.leases.drop(l.ID, l.token)
	if len(result.Pending()) == 0 {
		q.left(l.ID) // gone: no later attempt to mark
	} else {
		// The commit woke delivery (committer.wake) while the message
		// was still leased: it may be due now that it is not.
		q.notify()
	}
	return result, nil
}

// tries reports whether some outcome is an attempt rather than a wait.
func tries(outcomes []Outcome) bool {
	return slices.ContainsFunc(outcomes, func(o Outcome) bool { return o.Result != Waiting })
}

// triedOnly leaves out the outcomes that only wait.
func triedOnly(outcomes []Outcome) []Outcome {
	return slices.DeleteFunc(slices.Clone(outcomes), func(o Outcome) bool { return o.Result == Waiting })
}

// applyOutcomes updates m's recipients and returns those that died.
func applyOutcomes(m *Message, outcomes []Outcome, now time.Time) []Recipient {
	var died []Recipient
	for _, o := range outcomes {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.Address != o.Address || !r.Status.Pending() {
				continue
			}
			if o.Result == Waiting {
				// Its relays are down: no attempt, no reply, only a
				// new time (and the relay it waits for).
				r.NextAttempt = o.NextAttempt
				if o.Relay != "" {
					r.Relay = o.Relay
				}
				continue
			}
			r.Attempts++
			if o.Relay != "" {
				r.Relay = o.Relay
			}
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
		// A dead letter that does not decode has nothing to keep; it
		// is replaced rather than keeping the message from ever
		// being recorded.
		if old, err := decodeDead(v); err == nil {
			d = *old
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
	if err := b.Put([]byte(m.ID), v); err != nil {
		return err
	}
	return countDead(tx, &d) // counters.go
}

// remove takes a finished message out of the queue, and its body too unless
// a dead letter still needs it. A record of what became of it stays in the
// archive (archive.go). before is what the counts hold of its stored
// record (counters.go).
func (q *Queue) remove(tx *bolt.Tx, m *Message, before storedTally) error {
	if err := q.archive(tx, m, q.opts.Now()); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSchedule).Delete(scheduleKey(m.dueAt(), m.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketMessages).Delete([]byte(m.ID)); err != nil {
		return err
	}
	if err := unflush(tx, m.ID); err != nil { // flush.go
		return err
	}
	if err := uncountMessage(tx, m.ID, before); err != nil { // counters.go
		return err
	}
	if tx.Bucket(bucketDead).Get([]byte(m.ID)) != nil {
		return nil
	}
	return deleteBody(tx, m.ID)
}
