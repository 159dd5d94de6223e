package queue

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// checkIndex verifies relayq's own invariants on top of bbolt's: each
// message has exactly its one schedule entry (none while held) and a body;
// every schedule entry and body chunk belongs to something; every body
// with a checksum (Message.BodyCRC32C) matches it; every key of a bucket
// keyed by message ID is a queue ID, every schedule key holds a time and
// an ID (damagedKey).
func checkIndex(tx *bolt.Tx) []error {
	var problems []error
	messages := tx.Bucket(bucketMessages)
	bodies := tx.Bucket(bucketBodies)
	dead := tx.Bucket(bucketDead)
	sched := tx.Bucket(bucketSchedule)
	for _, b := range [][]byte{bucketMessages, bucketDead, bucketNotices, bucketArchive} {
		_ = tx.Bucket(b).ForEach(func(k, _ []byte) error {
			if !ValidID(string(k)) {
				problems = append(problems, damagedKey(b, k))
			}
			return nil
		})
	}

	_ = messages.ForEach(func(k, v []byte) error {
		m, err := decodeMessage(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("message %s: record does not decode: %w", k, err))
			return nil
		}
		withFlush(tx, m) // flush.go
		switch scheduled := sched.Get(scheduleKey(m.dueAt(), m.ID)) != nil; {
		case m.Held && scheduled:
			problems = append(problems, fmt.Errorf("message %s: held but scheduled (it would be delivered)", k))
		case !m.Held && !scheduled:
			problems = append(problems, fmt.Errorf("message %s: no schedule entry (it would never be delivered)", k))
		}
		switch {
		case !hasBody(tx, m.ID):
			problems = append(problems, fmt.Errorf("message %s: body missing", k))
		default:
			if bad := bodyMismatch(tx, m); bad != "" {
				problems = append(problems, fmt.Errorf("message %s: body is corrupt (%s); delivery will dead-letter it", k, bad))
			}
		}
		return nil
	})
	_ = dead.ForEach(func(k, v []byte) error {
		d, err := decodeDead(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("dead letter %s: record does not decode: %w", k, err))
			return nil
		}
		if d.Record == nil || messages.Get(k) != nil {
			return nil // a live message's body was checked above
		}
		if bad := bodyMismatch(tx, d.Record); bad != "" {
			problems = append(problems, fmt.Errorf("dead letter %s: body is corrupt (%s)", k, bad))
		}
		return nil
	})
	_ = sched.ForEach(func(k, _ []byte) error {
		_, id, ok := splitTimeKey(k)
		if !ok {
			problems = append(problems, damagedKey(bucketSchedule, k))
			return nil
		}
		v := messages.Get(id)
		if v == nil {
			problems = append(problems, fmt.Errorf("schedule entry for %s: no such message", id))
			return nil
		}
		if m, err := decodeMessage(v); err == nil && !bytes.Equal(scheduleKey(withFlush(tx, m).dueAt(), m.ID), k) {
			problems = append(problems, fmt.Errorf("schedule entry for %s: stale (message is due at %s)", id, m.dueAt()))
		}
		return nil
	})
	_ = bodies.ForEach(func(k, v []byte) error {
		id, ok := chunkID(k)
		if v == nil { // a body bucket
			id, ok = k, ValidID(string(k))
		}
		if !ok {
			problems = append(problems, fmt.Errorf("body chunk %q: malformed key", k))
			return nil
		}
		if messages.Get(id) == nil && dead.Get(id) == nil {
			problems = append(problems, fmt.Errorf("body of %s: orphaned (no message or dead letter)", id))
		}
		return nil
	})
	return append(problems, checkFlushed(tx)...) // flush.go
}
