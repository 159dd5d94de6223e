package queue

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// What the queue does with what fails its checks: a message record that
// does not decode (damaged), and a body that no longer matches the
// checksum taken when it was queued (corrupt). Neither is ever sent;
// neither stops the rest of the queue. Listings show a damaged record as a
// stand-in (see damaged, in queue.go), Delete and Expire take it out of
// the queue, and Check names both.

// removeDamaged takes the damaged record of id out of the queue with its
// schedule entries, which it finds by ID (the record that said when the
// message was due is unreadable). With dead set the body stays, with a
// dead letter of reason ReasonDamaged to keep it (Expire); else the body
// goes too, unless a dead letter of the message already holds it
// (Delete). No archive record is written: there is no envelope to keep.
func (q *Queue) removeDamaged(tx *bolt.Tx, id string, dead bool, now time.Time) error {
	if q.isLeased(id) {
		return fmt.Errorf("queue: %s: %w", id, ErrLeased)
	}
	if err := deleteTimeKeyed(tx.Bucket(bucketSchedule), id); err != nil {
		return err
	}
	before := storedTallyOf(tx, id) // counters.go
	if err := tx.Bucket(bucketMessages).Delete([]byte(id)); err != nil {
		return err
	}
	if err := unflush(tx, id); err != nil { // flush.go
		return err
	}
	if err := uncountMessage(tx, id, before); err != nil { // counters.go
		return err
	}
	if dead {
		d, err := getDead(tx, id)
		if err != nil {
			d = &DeadLetter{ID: id, Size: bodySize(tx, id), Created: idTime(id)}
		}
		d.Died, d.Reason = now, ReasonDamaged
		return putDead(tx, d)
	}
	if tx.Bucket(bucketDead).Get([]byte(id)) != nil {
		return nil
	}
	return deleteBody(tx, id)
}

// deleteTimeKeyed deletes every entry of id from b, a bucket keyed by
// time ‖ id (the schedule, the archive's time index), by reading it all:
// for when the record that held the time is unreadable.
func deleteTimeKeyed(b *bolt.Bucket, id string) error {
	var keys [][]byte
	err := b.ForEach(func(k, _ []byte) error {
		if len(k) > 8 && bytes.Equal(k[8:], []byte(id)) {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Damaged keys: a key of the schedule or the archive's time index too
// short to hold a time and an ID, or a key of a bucket keyed by message ID
// that is no queue ID. relayq never writes one; a broken page can hold
// one. Whoever walks the bucket skips it, logging it once per run; Check
// names it (damagedKey). Nothing deletes it: it names no message, and the
// operator should see it in `relayq queue check`.

// damagedKeys is the set of damaged keys already logged. It holds only
// what damage to the file put there, so it stays small.
type damagedKeys struct {
	mu     sync.Mutex
	logged map[string]bool
}

// skipDamagedKey logs, the first time, that the damaged key k of bucket
// is skipped.
func (q *Queue) skipDamagedKey(bucket, k []byte) {
	name := string(bucket) + "/" + string(k)
	q.badKeys.mu.Lock()
	first := !q.badKeys.logged[name]
	if first {
		if q.badKeys.logged == nil {
			q.badKeys.logged = make(map[string]bool)
		}
		q.badKeys.logged[name] = true
	}
	q.badKeys.mu.Unlock()
	if first {
		q.log.Error("skipping a damaged key in the queue file; relayq queue check names it",
			"bucket", string(bucket), "key", hex.EncodeToString(k))
	}
}

// damagedKey is the problem Check reports for the damaged key k of bucket.
func damagedKey(bucket, k []byte) error {
	why := "too short to hold a time and an ID; skipped"
	if !timeKeyed(bucket) {
		why = "not a queue ID"
	}
	return fmt.Errorf("bucket %s: damaged key %x (%d bytes, %s)", bucket, k, len(k), why)
}

// timeKeyed reports whether bucket is keyed by time ‖ id.
func timeKeyed(bucket []byte) bool {
	return bytes.Equal(bucket, bucketSchedule)
}

// CorruptLine is the first line of the reply every pending recipient of
// a message whose body failed its checksum gets in its dead letter.
const CorruptLine = "message body is corrupt in the queue file (checksum mismatch); not sent"

// DeadCorrupt moves every pending recipient of the leased message to the
// dead letters, without an attempt, because its body failed VerifyBody
// (cause): the dead letter has reason ReasonCorrupt and each recipient the
// reply CorruptLine followed by cause. The body stays with the dead letter
// for the operator. It ends the lease and returns the message as
// recorded, like Record.
func (q *Queue) DeadCorrupt(l *Lease, cause error) (*Message, error) {
	now := q.opts.Now()
	var result *Message
	err := q.commit.commit(func(tx *bolt.Tx) error {
		m, err := q.leased(tx, l)
		if err != nil {
			return err
		}
		before := readTally(m) // counters.go
		died := killPending(m, func(Recipient) *Reply {
			// Code 0: relayq's own failure, not a relay's reply;
			// 5.3.0 (mail system status) for the failure notice.
			return &Reply{Enhanced: "5.3.0", Lines: []string{CorruptLine, cause.Error()}}
		})
		if err := addDead(tx, m, died, now); err != nil {
			return err
		}
		d, err := getDead(tx, m.ID)
		if err != nil {
			return err
		}
		d.Reason = ReasonCorrupt
		if err := putDead(tx, d); err != nil {
			return err
		}
		result = m
		return q.remove(tx, m, before)
	})
	if err != nil {
		return nil, fmt.Errorf("queue: dead-letter corrupt %s: %w", l.ID, err)
	}
	q.leases.drop(l.ID, l.token)
	q.inflight.end(l.ID)
	q.left(l.ID)
	q.notify()
	return result, nil
}
