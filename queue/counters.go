package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Counters: what `relayq status` and the metrics show, kept by the store
// as it changes, in the same transaction as the change, so that a summary
// reads a few keys instead of every record (Summarize took 10.9 s with a
// million messages queued) and a crash (kill -9) never leaves them wrong.
//
//   - meta/counts holds the sums (counts) of what each message record
//     says (its tally: stored state, pending recipients, size and, for a
//     message tried and not held, the start of its lifetime) and the
//     number of dead letters. A change subtracts the tally of the record
//     it replaces, decoded from the stored record (a compact record
//     decodes in about a microsecond), and adds the new one. Since format
//     3 no per-message tally is stored: one bucket fewer for every change
//     to write (two pages a commit).
//   - bucketTally holds, per dead letter ("d" ‖ ID), when it died.
//   - bucketDeferred indexes the tried, not held messages by the start of
//     their lifetime (time ‖ ID): its first key is the oldest deferred.
//   - bucketDeaths indexes the dead letters by when they died (time ‖ ID):
//     the last day's are a seek away.
//
// Every write of a message record or dead letter goes through the hooks
// countMessage, uncountMessage, countDead and uncountDead. A file written
// before counters is tallied once, at Open (buildCounters). Check
// recomputes them all and names any difference.
//
// A record that does not decode is counted as a queued message of no
// recipients and no size (what buildCounters and Check take it for). When
// a change meets one, what the counts hold of it is unknown (it may have
// been damaged after it was counted), so the sums are recomputed from
// every record in the same transaction (recount): slow with a large
// queue, but only ever after damage.
//
// What the tallies cannot know, damage to a record after it was written
// (a page scribbled over), is found by an audit in the background after
// Open and by the summaries themselves (damageSet).

var (
	bucketTally    = []byte("tally")
	bucketDeferred = []byte("deferred")
	bucketDeaths   = []byte("deaths")
	keyCounts      = []byte("counts")
	counterBuckets = [][]byte{bucketTally, bucketDeferred, bucketDeaths}
)

// Stored states, as a tally keeps them (a lease and damage are not
// stored: Summarize applies them).
const (
	tallyQueued byte = iota
	tallyDeferred
	tallyHeld
	tallyUncertain
	nTallyStates
)

// counts are the sums meta/counts keeps.
type counts struct {
	states  [nTallyStates]int64 // messages by stored state
	pending int64               // recipients still to be delivered
	bytes   int64               // sizes of the queued messages
	dead    int64               // dead letters
}

const countsLen = 8 * (int(nTallyStates) + 3)

func (c *counts) encode() []byte {
	b := make([]byte, 0, countsLen)
	for _, n := range append(c.states[:], c.pending, c.bytes, c.dead) {
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return b
}

func decodeCounts(v []byte) (counts, error) {
	var c counts
	if len(v) != countsLen {
		return c, fmt.Errorf("queue: counters of %d bytes, want %d", len(v), countsLen)
	}
	n := func(i int) int64 { return int64(binary.BigEndian.Uint64(v[8*i:])) }
	for i := range c.states {
		c.states[i] = n(i)
	}
	c.pending, c.bytes, c.dead = n(int(nTallyStates)), n(int(nTallyStates)+1), n(int(nTallyStates)+2)
	return c, nil
}

func readCounts(tx *bolt.Tx) (counts, error) {
	return decodeCounts(tx.Bucket(bucketMeta).Get(keyCounts))
}

func writeCounts(tx *bolt.Tx, c counts) error {
	return tx.Bucket(bucketMeta).Put(keyCounts, c.encode())
}

// tally is what the counts hold of one message.
type tally struct {
	state   byte
	pending int64
	size    int64
	since   int64 // UnixNano of LifetimeStart when tried and not held; 0 otherwise
}

func tallyOf(m *Message) tally {
	t := tally{state: tallyQueued, size: m.Size}
	for _, r := range m.Recipients {
		if r.Status.Pending() {
			t.pending++
		}
	}
	switch {
	case m.Held:
		t.state = tallyHeld
	case m.uncertain():
		t.state = tallyUncertain
	case m.tried():
		t.state = tallyDeferred
	}
	if !m.Held && m.tried() {
		t.since = m.LifetimeStart().UnixNano()
	}
	return t
}

func (c *counts) add(t tally, sign int64) {
	c.states[t.state] += sign
	c.pending += sign * t.pending
	c.bytes += sign * t.size
}

func tallyKey(kind byte, id string) []byte { return append([]byte{kind}, id...) }

// storedTally is what the counts hold of the stored record v (nil: no
// record): known is false for a record that does not decode.
type storedTally struct {
	t     tally
	had   bool
	known bool
}

func tallyOfRecord(v []byte) storedTally {
	if v == nil {
		return storedTally{known: true}
	}
	m, err := decodeMessage(v)
	if err != nil {
		return storedTally{had: true}
	}
	return storedTally{t: tallyOf(m), had: true, known: true}
}

// readTally is the storedTally of m as just decoded from its record,
// before any change to it: a change function that has read the record
// need not decode it again.
func readTally(m *Message) storedTally {
	return storedTally{t: tallyOf(m), had: true, known: true}
}

// storedTallyOf is the tally of id's record as tx holds it now.
func storedTallyOf(tx *bolt.Tx, id string) storedTally {
	return tallyOfRecord(tx.Bucket(bucketMessages).Get([]byte(id)))
}

// countMessage is the hook after m's record was written over the record
// whose tally was before (storedTallyOf, read before the write; the zero
// storedTally for a new message, with known set): the counts and the
// deferred index follow it.
func countMessage(tx *bolt.Tx, m *Message, before storedTally) error {
	now := tallyOf(m)
	return retally(tx, m.ID, before, &now)
}

// uncountMessage is the hook after the record of id, whose tally was
// before (storedTallyOf, read before the delete), was deleted.
func uncountMessage(tx *bolt.Tx, id string, before storedTally) error {
	return retally(tx, id, before, nil)
}

// newMessageTally is the storedTally of no record.
var newMessageTally = storedTally{known: true}

// retally replaces, in the counts, the tally before of id by now (nil:
// none).
func retally(tx *bolt.Tx, id string, before storedTally, now *tally) error {
	if !counted(tx) {
		return nil // buildCounters will
	}
	if before.known && before.had && now != nil && before.t == *now {
		return nil
	}
	deferred := tx.Bucket(bucketDeferred)
	if !before.known {
		// Damaged: its entry in the deferred index is found by ID, and
		// the sums are recomputed once the change is made.
		if err := deleteTimeKeyed(deferred, id); err != nil {
			return err
		}
		if now != nil && now.since != 0 {
			if err := deferred.Put(timeKey(now.since, id), nil); err != nil {
				return err
			}
		}
		return recount(tx)
	}
	c, err := readCounts(tx)
	if err != nil {
		return err
	}
	old := before.t
	if before.had {
		c.add(old, -1)
		if old.since != 0 && (now == nil || now.since != old.since) {
			if err := deferred.Delete(timeKey(old.since, id)); err != nil {
				return err
			}
		}
	}
	if now != nil {
		c.add(*now, 1)
		if now.since != 0 && (!before.had || old.since != now.since) {
			if err := deferred.Put(timeKey(now.since, id), nil); err != nil {
				return err
			}
		}
	}
	return writeCounts(tx, c)
}

// forgetLost takes the messages lost, whose schedule entries were left
// without a record, out of the deferred index and the sums, which may
// still hold them (recount).
func forgetLost(tx *bolt.Tx, lost []string) error {
	if len(lost) == 0 || !counted(tx) {
		return nil
	}
	gone := make(map[string]bool, len(lost))
	for _, id := range lost {
		gone[id] = true
	}
	var keys [][]byte
	deferred := tx.Bucket(bucketDeferred)
	_ = deferred.ForEach(func(k, _ []byte) error {
		if len(k) > 8 && gone[string(k[8:])] {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range keys {
		if err := deferred.Delete(k); err != nil {
			return err
		}
	}
	return recount(tx)
}

// recount recomputes the sums of the message records from every record
// (the dead letters' count stays): after a change met a record that does
// not decode, or a message whose record is gone, whose share of the sums
// nothing can tell.
func recount(tx *bolt.Tx) error {
	c, err := readCounts(tx)
	if err != nil {
		return err
	}
	sums := messageSums(tx)
	c.states, c.pending, c.bytes = sums.states, sums.pending, sums.bytes
	return writeCounts(tx, c)
}

// messageSums adds up the tallies of every message record; one that does
// not decode counts as a queued message of no recipients and no size.
func messageSums(tx *bolt.Tx) counts {
	var c counts
	_ = tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
		c.add(recordTallyOrStandIn(k, v), 1)
		return nil
	})
	return c
}

// recordTallyOrStandIn is the tally of the record v of id k, or, when it
// does not decode, of a queued message of no recipients and no size.
func recordTallyOrStandIn(k, v []byte) tally {
	m, err := decodeMessage(v)
	if err != nil {
		m = &Message{ID: string(k)}
	}
	return tallyOf(m)
}

// countDead is the hook after dead letter d was written.
func countDead(tx *bolt.Tx, d *DeadLetter) error {
	if !counted(tx) {
		return nil // buildCounters will
	}
	key := tallyKey('d', d.ID)
	c, err := readCounts(tx)
	if err != nil {
		return err
	}
	if old := tx.Bucket(bucketTally).Get(key); old != nil {
		if err := dropDeath(tx, old, d.ID); err != nil {
			return err
		}
	} else {
		c.dead++
	}
	var died int64
	if !d.Died.IsZero() {
		died = d.Died.UnixNano()
		if err := tx.Bucket(bucketDeaths).Put(timeKey(died, d.ID), nil); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketTally).Put(key, binary.BigEndian.AppendUint64(nil, uint64(died))); err != nil {
		return err
	}
	return writeCounts(tx, c)
}

// uncountDead is the hook after the dead letter id was deleted.
func uncountDead(tx *bolt.Tx, id string) error {
	if !counted(tx) {
		return nil // buildCounters will
	}
	key := tallyKey('d', id)
	old := tx.Bucket(bucketTally).Get(key)
	if old == nil {
		return nil
	}
	if err := dropDeath(tx, old, id); err != nil {
		return err
	}
	if err := tx.Bucket(bucketTally).Delete(key); err != nil {
		return err
	}
	c, err := readCounts(tx)
	if err != nil {
		return err
	}
	c.dead--
	return writeCounts(tx, c)
}

// dropDeath deletes the deaths index entry of the dead letter id whose
// tally is v.
func dropDeath(tx *bolt.Tx, v []byte, id string) error {
	if len(v) != 8 || binary.BigEndian.Uint64(v) == 0 {
		return nil
	}
	return tx.Bucket(bucketDeaths).Delete(timeKey(int64(binary.BigEndian.Uint64(v)), id))
}

func timeKey(ns int64, id string) []byte {
	return scheduleKey(time.Unix(0, ns), id)
}

// counted reports whether tx's file has its counters. Until it has
// (a file from before them, while Open builds them), the hooks write
// nothing: buildCounters tallies every record afterwards.
func counted(tx *bolt.Tx) bool {
	return tx.Bucket(bucketMeta).Get(keyCounts) != nil
}

// buildBatch is how many records one transaction of buildCounters
// tallies: the build of a million records neither holds them all in
// memory nor makes one huge commit.
const buildBatch = 20000

// buildCounters gives a file that has no counters yet (written by a
// relayq before them) its counters, from every record, once, at Open.
// The sums are written last, in their own commit: a build cut short
// (kill -9) leaves none, and the next Open starts it again. A record
// that does not decode is tallied as queued (its state is unknown; the
// summaries count it as damaged), a dead letter that does not decode as
// having died at an unknown time.
func buildCounters(db *bolt.DB) error {
	var done bool
	err := db.Update(func(tx *bolt.Tx) error {
		if done = counted(tx); done {
			return nil
		}
		for _, name := range counterBuckets {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || done {
		return err
	}
	var c counts
	for _, b := range []struct {
		name  []byte
		tally func(tx *bolt.Tx, k, v []byte) error
	}{
		{bucketMessages, func(tx *bolt.Tx, k, v []byte) error {
			t := recordTallyOrStandIn(k, v)
			c.add(t, 1)
			if t.since == 0 {
				return nil
			}
			return tx.Bucket(bucketDeferred).Put(timeKey(t.since, string(k)), nil)
		}},
		{bucketDead, func(tx *bolt.Tx, k, v []byte) error {
			c.dead++
			var died int64
			if d, err := decodeDead(v); err == nil && !d.Died.IsZero() {
				died = d.Died.UnixNano()
				if err := tx.Bucket(bucketDeaths).Put(timeKey(died, string(k)), nil); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketTally).Put(tallyKey('d', string(k)), binary.BigEndian.AppendUint64(nil, uint64(died)))
		}},
	} {
		var after []byte
		for {
			var last []byte
			err := db.Update(func(tx *bolt.Tx) error {
				cur := tx.Bucket(b.name).Cursor()
				k, v := cur.First()
				if after != nil {
					if k, v = cur.Seek(after); k != nil && bytes.Equal(k, after) {
						k, v = cur.Next()
					}
				}
				for n := 0; k != nil && n < buildBatch; k, v = cur.Next() {
					if err := b.tally(tx, k, v); err != nil {
						return err
					}
					last = bytes.Clone(k)
					n++
				}
				return nil
			})
			if err != nil {
				return err
			}
			if last == nil {
				break
			}
			after = last
		}
	}
	return db.Update(func(tx *bolt.Tx) error { return writeCounts(tx, c) })
}

// dropMessageTallies deletes the per-message tallies ("m" ‖ ID) a file
// of format 2 kept in bucketTally, in one commit: the bucket is replaced
// by one holding only the dead letters' tallies, which frees the old one's
// pages without deleting its keys one by one (a million tallies: well
// under a second). A file without any costs one seek in a read
// transaction.
func dropMessageTallies(db *bolt.DB) error {
	var some bool
	_ = db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketTally).Cursor().Seek([]byte{'m'})
		some = k != nil && k[0] == 'm'
		return nil
	})
	if !some {
		return nil
	}
	return db.Update(func(tx *bolt.Tx) error {
		var keep [][2][]byte
		c := tx.Bucket(bucketTally).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if k[0] == 'm' {
				if k, v = c.Seek([]byte{'m' + 1}); k == nil {
					break
				}
			}
			keep = append(keep, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
		}
		if err := tx.DeleteBucket(bucketTally); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketTally)
		if err != nil {
			return err
		}
		for _, kv := range keep {
			if err := b.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkCounters recomputes what the counters hold and names every
// difference: a deferred index entry too many or missing, a dead letter
// without its tally, a tally without its dead letter, a per-message tally
// left in a file of format 3, and sums that are off. A file without counts
// yet (Open builds them) has none to check. While a message record does
// not decode (Check names it), what the counts hold of it is unknown: the
// sums and the number of deferred index entries are not compared then.
func checkCounters(tx *bolt.Tx) []error {
	stored := tx.Bucket(bucketMeta).Get(keyCounts)
	if stored == nil {
		return nil
	}
	for _, name := range counterBuckets {
		if tx.Bucket(name) == nil {
			return []error{fmt.Errorf("counters: bucket %q is missing", name)}
		}
	}
	var problems []error
	var want counts
	tallies, deferred, deaths := tx.Bucket(bucketTally), tx.Bucket(bucketDeferred), tx.Bucket(bucketDeaths)
	var nTallies, nDeferred, nDeaths, nDamaged int
	_ = tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err != nil {
			nDamaged++ // damaged: Check names it
			return nil
		}
		t := tallyOf(m)
		want.add(t, 1)
		if t.since != 0 {
			nDeferred++
			if deferred.Get(timeKey(t.since, string(k))) == nil {
				problems = append(problems, fmt.Errorf("counters: message %s: missing from the deferred index", k))
			}
		}
		return nil
	})
	_ = tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
		nTallies++
		want.dead++
		t := tallies.Get(tallyKey('d', string(k)))
		if t == nil {
			problems = append(problems, fmt.Errorf("counters: dead letter %s is not counted", k))
			return nil
		}
		if len(t) == 8 && binary.BigEndian.Uint64(t) != 0 {
			nDeaths++
			if deaths.Get(timeKey(int64(binary.BigEndian.Uint64(t)), string(k))) == nil {
				problems = append(problems, fmt.Errorf("counters: dead letter %s: missing from the deaths index", k))
			}
		}
		if d, err := decodeDead(v); err == nil && (len(t) != 8 || int64(binary.BigEndian.Uint64(t)) != d.Died.UnixNano()) {
			problems = append(problems, fmt.Errorf("counters: dead letter %s: counted as dead at another time", k))
		}
		return nil
	})
	var nDeadTallies, nMessageTallies int
	_ = tallies.ForEach(func(k, _ []byte) error {
		if len(k) > 0 && k[0] == 'm' {
			nMessageTallies++
		} else {
			nDeadTallies++
		}
		return nil
	})
	if nMessageTallies > 0 && string(tx.Bucket(bucketMeta).Get(keyVersion)) == string(formatVersion) {
		// A file of format 2 (checked before a relayq of format 3 opened
		// it) still has them: Open deletes them.
		problems = append(problems, fmt.Errorf("counters: %d per-message tallies left from format 2", nMessageTallies))
	}
	indexes := []struct {
		name string
		n    int
		want int
	}{{"dead letter tallies", nDeadTallies, nTallies}, {"deaths index entries", deaths.Stats().KeyN, nDeaths}}
	if nDamaged == 0 {
		indexes = append(indexes, struct {
			name string
			n    int
			want int
		}{"deferred index entries", deferred.Stats().KeyN, nDeferred})
	}
	for _, b := range indexes {
		if b.n != b.want {
			problems = append(problems, fmt.Errorf("counters: %d %s for %d", b.n, b.name, b.want))
		}
	}
	switch got, err := decodeCounts(stored); {
	case err != nil || nDamaged == 0 && got != want:
		problems = append(problems, fmt.Errorf("counters: the sums are %+v, the records add up to %+v", got, want))
	case got.dead != want.dead:
		problems = append(problems, fmt.Errorf("counters: %d dead letters counted, %d stored", got.dead, want.dead))
	}
	return problems
}

// damageSet is what the store found of records that do not decode after
// they were written, which no tally can know: a background audit after
// Open reads every record once, Lease and the listings add what they come
// across. Summarize drops an ID once its record is gone or reads again.
type damageSet struct {
	mu       sync.Mutex
	messages map[string]bool
	dead     map[string]bool
	audited  chan struct{} // closed when the audit after Open has read every record
}

func newDamageSet() *damageSet {
	return &damageSet{messages: map[string]bool{}, dead: map[string]bool{}, audited: make(chan struct{})}
}

func (s *damageSet) note(dead bool, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dead {
		s.dead[id] = true
	} else {
		s.messages[id] = true
	}
}

// snapshot returns the IDs noted, messages and dead letters.
func (s *damageSet) snapshot() (messages, dead []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.messages {
		messages = append(messages, id)
	}
	for id := range s.dead {
		dead = append(dead, id)
	}
	return messages, dead
}

func (s *damageSet) drop(dead bool, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dead {
		delete(s.dead, id)
	} else {
		delete(s.messages, id)
	}
}

// auditBatch is how many records one read transaction of the audit reads:
// short transactions, so that the audit never holds up a remap of the file
// for long, and a bounded number of pages mapped at a time.
const auditBatch = 5000

// auditLoop reads every message record and dead letter once, in batches,
// and notes those that do not decode.
func (q *Queue) auditLoop(stop <-chan struct{}) {
	defer close(q.damage.audited)
	for _, b := range []struct {
		name   []byte
		dead   bool
		decode func([]byte) error
	}{
		{bucketMessages, false, func(v []byte) error { _, err := decodeMessage(v); return err }},
		{bucketDead, true, func(v []byte) error { _, err := decodeDead(v); return err }},
	} {
		var after []byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			var last []byte
			err := q.db.View(func(tx *bolt.Tx) error {
				c := tx.Bucket(b.name).Cursor()
				k, v := c.First()
				if after != nil {
					if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
						k, v = c.Next()
					}
				}
				for n := 0; k != nil && n < auditBatch; k, v = c.Next() {
					if b.decode(v) != nil {
						q.damage.note(b.dead, string(k))
					}
					last = bytes.Clone(k)
					n++
				}
				return nil
			})
			if err != nil || last == nil {
				break
			}
			after = last
			// The pages just read stay mapped, in relayq's resident
			// set, until trimmed (mapped.go): trim them now, and give
			// delivery the processor for a moment.
			if err := q.trimMappedPages(); err != nil {
				q.log.Debug("cannot release mapped pages", "err", err)
			}
			select {
			case <-stop:
				return
			case <-time.After(auditPause):
			}
		}
	}
}

// auditPause is the audit's pause between batches: at start-up, with a
// backlog to deliver, the audit takes a share of the processor, not all.
const auditPause = 2 * time.Millisecond

// Totals is what the counters say of the whole store: how many messages
// and dead letters it holds, and the size of the queued messages. A
// listing that shows a page says from it how many more there are.
type Totals struct {
	Messages int
	Dead     int
	Bytes    int64
}

// Totals reads the counters.
func (q *Queue) Totals() (Totals, error) {
	var t Totals
	err := q.db.View(func(tx *bolt.Tx) (err error) {
		t, err = totalsOf(tx)
		return err
	})
	if err != nil {
		return Totals{}, fmt.Errorf("queue: totals: %w", err)
	}
	return t, nil
}

func totalsOf(tx *bolt.Tx) (Totals, error) {
	var t Totals
	c, err := readCounts(tx)
	if err != nil {
		return t, err
	}
	for _, n := range c.states {
		t.Messages += int(n)
	}
	t.Dead, t.Bytes = int(c.dead), c.bytes
	return t, nil
}
