package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Idempotency keys (the submission API's Idempotency-Key header). A key is
// written in the same transaction as the message it names, so a crash can
// never leave a key without its message or a message without its key. Keys
// older than Options.IdempotencyWindow are ignored and pruned by the
// background pruner (archive.go).

// DefaultIdempotencyWindow is how long a key is remembered when
// Options.IdempotencyWindow is zero.
const DefaultIdempotencyWindow = 24 * time.Hour

var bucketKeys = []byte("idempotency")

// ErrKeyConflict is returned by PutOnce when the key was used within the
// window for a request with a different hash: nothing was stored.
var ErrKeyConflict = errors.New("queue: idempotency key used for a different request")

// KeyRecord is what the store keeps under an idempotency key.
type KeyRecord struct {
	Hash      string    `json:"hash"`                 // of the request, as the caller computes it
	MessageID string    `json:"message_id,omitempty"` // the caller's, returned with the record
	ID        string    `json:"id"`                   // the queue ID the first request got
	Created   time.Time `json:"created"`
}

// LookupKey returns the live record of key, or nil when there is none (or
// it is older than the window).
func (q *Queue) LookupKey(key string) (*KeyRecord, error) {
	var rec *KeyRecord
	err := q.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = q.liveKey(tx, key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: lookup key: %w", err)
	}
	return rec, nil
}

func (q *Queue) liveKey(tx *bolt.Tx, key string) (*KeyRecord, error) {
	v := tx.Bucket(bucketKeys).Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	var rec KeyRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("key record: %w", err)
	}
	if q.opts.Now().Sub(rec.Created) >= q.opts.IdempotencyWindow {
		return nil, nil
	}
	return &rec, nil
}

// PutOnce is Put under an idempotency key. When key was stored within the
// window with the same rec.Hash, nothing is stored and the first message's
// ID is returned with replayed true; with another hash, ErrKeyConflict.
// Otherwise the message and the key (rec, with its ID and time set) commit
// together.
func (q *Queue) PutOnce(ctx context.Context, env Envelope, body []byte, key string, rec KeyRecord) (id string, replayed bool, err error) {
	if key == "" {
		return "", false, errors.New("queue: put once: empty key")
	}
	now := q.opts.Now()
	return q.put(ctx, env, body, func(tx *bolt.Tx, id string) (string, error) {
		prior, err := q.liveKey(tx, key)
		switch {
		case err != nil:
			return "", err
		case prior != nil && prior.Hash != rec.Hash:
			return "", ErrKeyConflict
		case prior != nil:
			return prior.ID, nil
		}
		rec.ID, rec.Created = id, now
		v, err := json.Marshal(rec)
		if err != nil {
			return "", err
		}
		return "", tx.Bucket(bucketKeys).Put([]byte(key), v)
	})
}

// PruneKeys deletes up to max keys older than the window and returns how
// many it deleted.
func (q *Queue) PruneKeys(max int) (int, error) {
	var expired [][]byte
	_ = q.db.View(func(tx *bolt.Tx) error {
		expired = q.expiredKeys(tx, max)
		return nil
	})
	if len(expired) == 0 {
		return 0, nil
	}
	var n int
	err := q.commit.commitSpare(func(tx *bolt.Tx) error {
		n = 0
		for _, k := range q.expiredKeys(tx, max) {
			if err := tx.Bucket(bucketKeys).Delete(k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: prune keys: %w", err)
	}
	return n, nil
}

// expiredKeys are up to max keys past the window; a record that does not
// decode counts as expired.
func (q *Queue) expiredKeys(tx *bolt.Tx, max int) [][]byte {
	var keys [][]byte
	c := tx.Bucket(bucketKeys).Cursor()
	for k, _ := c.First(); k != nil && len(keys) < max; k, _ = c.Next() {
		if rec, err := q.liveKey(tx, string(k)); rec == nil || err != nil {
			keys = append(keys, append([]byte(nil), k...))
		}
	}
	return keys
}

// pruneKeysLoop prunes expired keys in batches until none is left.
func (q *Queue) pruneKeysLoop(stop <-chan struct{}) {
	pruneInBatches(stop, q.PruneKeys, func(err error) { q.log.Warn("cannot prune idempotency keys", "err", err) })
}
