package queue

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// When a message leaves the queue (every recipient delivered or dead, or an
// operator deleted it), a small record of what became of it stays behind in
// the "archive" bucket (archive_record.go) for Options.HistoryRetention, and
// while the history stays under Options.HistoryMaxSize, so that `relayq queue
// status ID` can still answer "delivered, by that relay, which called it
// 4Xyz" days later. The record has no body and no attempt history: the
// envelope, and each recipient's final state with the reply that settled
// it.
//
// Pruning reads the records in the order of their keys, queue IDs, which
// begin with when the message was created (idTime): every record of a
// message created before the cutoff is read, and those that left before it
// are deleted. One that left after it (a message that stayed queued long)
// is read again by the next pass, until it too is past the cutoff; the
// first record of a message created after the cutoff ends the pass.
// Pruning runs in the background (see pruneLoop), in commits of at most
// pruneBatch records, so it never holds a long write transaction.
//
// Until format 3 a second bucket, "archive-by-time" (time left ‖ id →
// nothing), ordered the records by when they left; every delivery wrote
// it, a leaf and a branch more each commit. Open deletes it
// (dropArchiveTimeIndex).

var (
	bucketArchive = []byte("archive")
	// bucketArchiveTime is the time index of format 2, deleted at Open.
	bucketArchiveTime = []byte("archive-by-time")
)

// DefaultHistoryRetention is how long an archive record is kept when
// Options.HistoryRetention is zero.
const DefaultHistoryRetention = 7 * 24 * time.Hour

const (
	// pruneBatch bounds the records one pruning commit deletes.
	pruneBatch = 500
	// pruneInterval is how often the background pruner looks for records
	// past their retention.
	pruneInterval = time.Hour
)

// Fate is what became of a message that left the queue.
type Fate string

const (
	// FateDelivered: the relay accepted every recipient.
	FateDelivered Fate = "delivered"
	// FateDead: at least one recipient failed permanently or expired; its
	// dead letter holds the details until it is purged.
	FateDead Fate = "dead"
	// FateDeleted: an operator deleted the message before every recipient
	// was settled (Queue.Delete).
	FateDeleted Fate = "deleted"
)

// Archived is the record kept of a message after it left the queue.
type Archived struct {
	ID        string    `json:"id"`
	From      string    `json:"from"`
	Submitter Submitter `json:"submitter"`
	Created   time.Time `json:"created"`
	Size      int64     `json:"size"`
	Attempts  int       `json:"attempts"`
	// Left is when the message left the queue.
	Left       time.Time           `json:"left"`
	Fate       Fate                `json:"fate"`
	Recipients []ArchivedRecipient `json:"recipients"`
}

// ArchivedRecipient is one recipient's final state.
type ArchivedRecipient struct {
	Address  string `json:"address"`
	Status   Status `json:"status"`
	Attempts int    `json:"attempts"`
	// Time is when the recipient was last tried (delivered, for a
	// delivered one); zero if it never was.
	Time time.Time `json:"time,omitzero"`
	// Relay names the relay of that attempt, when the history had it.
	Relay string `json:"relay,omitempty"`
	// Reply is the reply that settled it (cut to the history's limits).
	Reply *Reply `json:"reply,omitempty"`
	// RelayID is the relay's own queue ID for the message, read from its
	// 2xx reply ("250 2.0.0 Ok: queued as 4Xyz"); empty when it gave none.
	RelayID string `json:"relay_id,omitempty"`
}

// fateOf says what became of m, which is leaving the queue.
func fateOf(m *Message) Fate {
	fate := FateDelivered
	for _, r := range m.Recipients {
		switch {
		case r.Status.Pending():
			return FateDeleted
		case r.Status == StatusDead:
			fate = FateDead
		}
	}
	return fate
}

// archive writes the record of m, which is leaving the queue at now,
// replacing any older record of the same ID (a dead letter requeued and
// then delivered leaves twice).
func (q *Queue) archive(tx *bolt.Tx, m *Message, now time.Time) error {
	if q.opts.HistoryRetention < 0 {
		return nil
	}
	a := Archived{
		ID: m.ID, From: m.From, Submitter: m.Submitter, Created: m.Created, Size: m.Size,
		Attempts: m.Attempts, Left: now, Fate: fateOf(m),
	}
	implied := make([]string, len(m.Recipients)) // what the record need not store (encodeArchivedKnowing)
	for i, r := range m.Recipients {
		ar := ArchivedRecipient{
			Address: r.Address, Status: r.Status, Attempts: r.Attempts, Time: r.LastAttempt,
			Relay: lastRelay(m.History, r.Address), Reply: clipReply(r.LastReply),
		}
		if r.Status == StatusDelivered {
			ar.RelayID = RelayQueueID(r.LastReply)
			// The ID read from the stored (clipped) reply is the same
			// unless clipping changed the reply: no second regexp.
			implied[i] = ar.RelayID
			if !sameReply(ar.Reply, r.LastReply) {
				implied[i] = impliedRelayID(ar.Status, ar.Reply)
			}
		}
		a.Recipients = append(a.Recipients, ar)
	}
	if err := unarchive(tx, m.ID); err != nil {
		return err
	}
	archive := tx.Bucket(bucketArchive)
	archive.FillPercent = appendFill
	if err := archive.Put([]byte(m.ID), encodeArchivedKnowing(&a, implied)); err != nil {
		return err
	}
	q.history.written.Add(1)
	return nil
}

// unarchive deletes the record of id, if any (damaged or not: failing here
// would fail the Record of a message the relay has already taken, which
// would then be sent again and again).
func unarchive(tx *bolt.Tx, id string) error {
	return tx.Bucket(bucketArchive).Delete([]byte(id))
}

// dropArchiveTimeIndex deletes the time index a file of format 2 kept
// beside the archive, in one commit (DeleteBucket frees its pages without
// reading its keys). A file without it costs a read transaction.
func dropArchiveTimeIndex(db *bolt.DB) error {
	var some bool
	_ = db.View(func(tx *bolt.Tx) error {
		some = tx.Bucket(bucketArchiveTime) != nil
		return nil
	})
	if !some {
		return nil
	}
	return db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketArchiveTime) })
}

// lastRelay is the relay of the latest attempt in h that tried addr.
func lastRelay(h []Attempt, addr string) string {
	for i := len(h) - 1; i >= 0; i-- {
		for _, r := range h[i].Results {
			for _, a := range r.Recipients {
				if a == addr {
					return h[i].Relay
				}
			}
		}
	}
	return ""
}

// Compiled on first use, not at start: every relayq process links this
// package, and `relayq sendmail` never needs them.
var (
	queuedAsRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)\bqueued\s+as:?\s+(\S+)`) })
	eximIDRe   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)(?:^|\s)id=(\S+)`) })
)

// RelayQueueID returns the relay's own queue ID from its 2xx reply, as
// Postfix ("Ok: queued as 4Xyz"), Sendmail-style relays ("queued as
// <id>") and Exim ("OK id=1abcDE-000ABC-12") put it; "" when the reply
// names none.
func RelayQueueID(r *Reply) string {
	if r == nil || r.Code/100 != 2 {
		return ""
	}
	text := strings.Join(r.Lines, " ")
	m := queuedAsRe().FindStringSubmatch(text)
	if m == nil {
		m = eximIDRe().FindStringSubmatch(text)
	}
	if m == nil {
		return ""
	}
	return strings.Trim(m[1], "<>()[],;.\"'")
}

// Lookup is everything the store knows of one queue ID: the message if it
// is still queued, its dead letter if some recipients died, and the record
// kept after it left the queue. Any of them may be nil, not all three.
type Lookup struct {
	Message  *Message    `json:"message,omitempty"`
	Dead     *DeadLetter `json:"dead_letter,omitempty"`
	Archived *Archived   `json:"archived,omitempty"`
}

// Lookup reads what the store knows of id, in one transaction. An archive
// record past its retention (not pruned yet) is left out. It returns
// ErrNotFound when there is nothing.
func (q *Queue) Lookup(id string) (*Lookup, error) {
	var l Lookup
	cutoff := q.opts.Now().Add(-q.opts.HistoryRetention)
	err := q.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMessages).Get([]byte(id)); v != nil {
			m, err := decodeMessage(v)
			if err != nil {
				m = damaged(tx, []byte(id), err)
			} else {
				withFlush(tx, m) // flush.go
			}
			l.Message = q.leasedUntil(m)
		}
		if v := tx.Bucket(bucketDead).Get([]byte(id)); v != nil {
			d, err := decodeDead(v)
			if err != nil {
				d = damagedDead(tx, []byte(id), err)
			}
			l.Dead = d
		}
		if v := tx.Bucket(bucketArchive).Get([]byte(id)); v != nil {
			a, err := decodeArchived([]byte(id), v)
			if err != nil {
				return fmt.Errorf("archive record %s: %w", id, err)
			}
			if q.opts.HistoryRetention > 0 && a.Left.After(cutoff) {
				l.Archived = a
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: lookup %s: %w", id, err)
	}
	if l.Message == nil && l.Dead == nil && l.Archived == nil {
		return nil, fmt.Errorf("queue: %s: %w", id, ErrNotFound)
	}
	return &l, nil
}

// PruneHistory deletes up to max archive records older than the
// retention, oldest first, in one commit, and returns how many it
// deleted. The background pruner calls it in batches; tests call it
// directly.
func (q *Queue) PruneHistory(max int) (int, error) {
	n, err := q.pruneHistoryBefore(q.opts.Now().Add(-q.opts.HistoryRetention), max)
	if err != nil {
		return 0, fmt.Errorf("queue: prune history: %w", err)
	}
	return n, nil
}

// pruneHistoryBefore deletes up to max archive records that left the
// queue before cutoff, oldest first, in one commit, and returns how many.
func (q *Queue) pruneHistoryBefore(cutoff time.Time, max int) (int, error) {
	n, _, err := q.pruneHistoryAfter(cutoff, nil, max)
	return n, err
}

// pruneHistoryAfter is pruneHistoryBefore reading from the first key after
// after (nil: from the first). It also returns the key to go on after in
// the next batch, nil when there is nothing more to read: a pass does not
// read the records it keeps (long stays) again for every batch.
func (q *Queue) pruneHistoryAfter(cutoff time.Time, after []byte, max int) (int, []byte, error) {
	var due bool
	_ = q.db.View(func(tx *bolt.Tx) error {
		keys, _ := q.expiredHistory(tx, cutoff, after, 1)
		due = len(keys) > 0
		return nil
	})
	if !due {
		return 0, nil, nil // no commit (and no fsync) for nothing
	}
	var n int
	var next []byte
	err := q.commit.commitSpare(func(tx *bolt.Tx) error {
		var keys [][]byte
		keys, next = q.expiredHistory(tx, cutoff, after, max)
		for _, k := range keys {
			if err := tx.Bucket(bucketArchive).Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, next, err
}

// expiredHistory returns the keys of up to max archive records of
// messages that left the queue before cutoff, oldest created first,
// reading from the first key after after (nil: from the first), and the
// last key it returned when it stopped at max (nil when it read all
// there was to read). Only the records of messages created before cutoff
// are read; a record that does not decode no longer says when it left
// and goes when its message's creation is past the cutoff. Keys that are
// no queue ID are skipped.
func (q *Queue) expiredHistory(tx *bolt.Tx, cutoff time.Time, after []byte, max int) (keys [][]byte, next []byte) {
	c := tx.Bucket(bucketArchive).Cursor()
	k, v := c.First()
	if after != nil {
		if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		if len(keys) == max {
			return keys, keys[len(keys)-1]
		}
		if !ValidID(string(k)) {
			q.skipDamagedKey(bucketArchive, k)
			continue
		}
		if !idTime(string(k)).Before(cutoff) {
			break
		}
		if a, err := decodeArchived(k, v); err == nil && !a.Left.Before(cutoff) {
			continue // stayed queued long: pruned by a later pass
		}
		keys = append(keys, bytes.Clone(k))
	}
	return keys, nil
}

// startPruner runs PruneHistory in the background until the store closes.
func (q *Queue) startPruner() {
	q.pruner = runBackground(q.pruneLoop)
}

// pruneLoop prunes at start and then every pruneInterval, each time in
// batches until nothing is left past the retention; in between it keeps
// the history under its size bound (archive_bound.go), looking every
// boundInterval.
func (q *Queue) pruneLoop(stop <-chan struct{}) {
	ticker := time.NewTicker(boundInterval)
	defer ticker.Stop()
	var pruned time.Time
	for {
		if time.Since(pruned) >= pruneInterval {
			pruned = time.Now()
			q.pruneAged(stop)
			q.pruneKeysLoop(stop)
		}
		if _, err := q.boundHistory(stop); err != nil {
			q.log.Warn("cannot keep the delivery history under its size bound", "err", err)
		}
		select {
		case <-ticker.C:
		case <-stop:
			return
		}
	}
}

// pruneAged prunes the records past the retention, in batches of
// pruneBatch.
func (q *Queue) pruneAged(stop <-chan struct{}) { q.pruneAgedBy(stop, pruneBatch) }

// pruneAgedBy prunes the records past the retention, in batches of batch
// records, each going on after the last.
func (q *Queue) pruneAgedBy(stop <-chan struct{}, batch int) {
	if q.opts.HistoryRetention < 0 {
		return
	}
	cutoff := q.opts.Now().Add(-q.opts.HistoryRetention)
	var after []byte
	for {
		_, next, err := q.pruneHistoryAfter(cutoff, after, batch)
		if err != nil {
			q.log.Warn("cannot prune the delivery history", "err", err)
		}
		if err != nil || next == nil {
			return
		}
		after = next
		select {
		case <-stop:
			return
		default:
		}
	}
}

// pruneInBatches calls prune with pruneBatch until it prunes less than a
// batch, fails (told to warn) or stop is closed.
func pruneInBatches(stop <-chan struct{}, prune func(int) (int, error), warn func(error)) {
	for {
		n, err := prune(pruneBatch)
		if err != nil {
			warn(err)
		}
		if err != nil || n < pruneBatch {
			return
		}
		select {
		case <-stop:
			return
		default:
		}
	}
}

// checkArchive verifies that every archive record decodes.
func checkArchive(tx *bolt.Tx) []error {
	var problems []error
	_ = tx.Bucket(bucketArchive).ForEach(func(k, v []byte) error {
		if _, err := decodeArchived(k, v); err != nil {
			problems = append(problems, fmt.Errorf("archive record %s: does not decode: %w", k, err))
		}
		return nil
	})
	return problems
}
