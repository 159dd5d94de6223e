package queue

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The history (archive.go) is bounded by size as well as by age: with
// Options.HistoryMaxSize set, the oldest records are pruned whenever the
// pages of the archive and of its time index take more than that, down
// to boundLowWater of it, so that a history at its bound is not pruned
// at every look. Measuring reads every page of the history, so it is done
// only when an estimate says the bound may be passed: the last
// measurement plus the records written since, at the last measurement's
// bytes per record. The pruner looks every boundInterval; between two
// looks the history may pass its bound by what that time's deliveries
// add.

const (
	boundInterval = time.Minute
	boundLowWater = 0.9
	// boundGuess is the bytes per record assumed before a measurement
	// has any record to go by.
	boundGuess = 300
)

// historySize is what the pruner knows of the history's size.
type historySize struct {
	written atomic.Int64 // records archived since the last measurement, added to by archive

	mu       sync.Mutex // held by boundHistory throughout, for the fields below
	measured bool
	bytes    int64 // pages of the archive buckets when last measured
	records  int64
}

func (h *historySize) perRecord() int64 {
	if h.records == 0 {
		return boundGuess
	}
	return max(1, h.bytes/h.records)
}

// HistorySize is the bytes of the pages the history takes and how many
// records it holds. It reads every page of the history.
func (q *Queue) HistorySize() (bytes, records int64, err error) {
	err = q.db.View(func(tx *bolt.Tx) error {
		s := tx.Bucket(bucketArchive).Stats()
		bytes, records = int64(s.BranchAlloc+s.LeafAlloc), int64(s.KeyN)
		return nil
	})
	return bytes, records, err
}

// boundHistory prunes the oldest records while the history takes more
// than Options.HistoryMaxSize, and returns how many it pruned.
func (q *Queue) boundHistory(stop <-chan struct{}) (int, error) {
	limit := q.opts.HistoryMaxSize
	h := &q.history
	h.mu.Lock()
	defer h.mu.Unlock()
	if limit <= 0 || (h.measured && h.bytes+h.written.Load()*h.perRecord() <= limit) {
		return 0, nil
	}
	pruned := 0
	for {
		h.written.Store(0)
		bytes, records, err := q.HistorySize()
		if err != nil {
			return pruned, err
		}
		h.measured, h.bytes, h.records = true, bytes, records
		if bytes <= limit || records == 0 {
			return pruned, nil
		}
		excess := bytes - int64(float64(limit)*boundLowWater)
		left := (excess + h.perRecord() - 1) / h.perRecord()
		for left > 0 {
			n, err := q.pruneHistoryBefore(time.Unix(0, math.MaxInt64), int(min(left, pruneBatch)))
			if err != nil {
				return pruned, fmt.Errorf("queue: bound history: %w", err)
			}
			if n == 0 {
				return pruned, nil
			}
			pruned += n
			left -= int64(n)
			select {
			case <-stop:
				return pruned, nil
			default:
			}
		}
	}
}
