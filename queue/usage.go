package queue

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Footprint is what intake's per-submitter limits need to know of a
// message in the store.
type Footprint struct {
	ID        string
	Submitter Submitter
	Size      int64
	Created   time.Time
	// Dead is set for a dead letter; a message some of whose recipients
	// died is reported twice, once queued and once dead.
	Dead bool
}

// footprint decodes only the fields of a Footprint from a dead letter.
type footprint struct {
	ID        string    `json:"id"`
	Submitter Submitter `json:"submitter"`
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
}

// Footprints calls fn for every queued message and every dead letter, in
// one read transaction. It is a full scan, for callers that cache what
// they learn from it.
func (q *Queue) Footprints(fn func(Footprint)) error {
	err := q.db.View(func(tx *bolt.Tx) error {
		for _, b := range []struct {
			name []byte
			dead bool
		}{{bucketMessages, false}, {bucketDead, true}} {
			err := tx.Bucket(b.name).ForEach(func(k, v []byte) error {
				f, err := decodeFootprint(v, b.dead)
				if err != nil {
					return nil // damaged: nobody to count it for (queue check names it)
				}
				fn(f)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: footprints: %w", err)
	}
	return nil
}

// decodeFootprint reads the footprint of a message record (compact or
// JSON: decodeMessage) or of a dead letter (JSON, whose other fields it
// leaves undecoded).
func decodeFootprint(v []byte, dead bool) (Footprint, error) {
	if !dead {
		m, err := decodeMessage(v)
		if err != nil {
			return Footprint{}, err
		}
		return Footprint{ID: m.ID, Submitter: m.Submitter, Size: m.Size, Created: m.Created}, nil
	}
	var f footprint
	if err := json.Unmarshal(v, &f); err != nil {
		return Footprint{}, err
	}
	return Footprint{ID: f.ID, Submitter: f.Submitter, Size: f.Size, Created: f.Created, Dead: true}, nil
}
