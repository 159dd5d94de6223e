package queue

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Listings a page at a time: an operator's listing of a queue of a
// million messages reads one page of records in one short read
// transaction, in ID order (the order of arrival), and says where the next
// page starts (keyset paging), instead of decoding every record into one
// slice (List took 105 s and 2 GB with a million messages queued).

// PageOptions selects a page of a listing.
type PageOptions struct {
	// After: only records whose ID sorts after it; "" starts at the
	// oldest.
	After string
	// Limit is the most records the page holds; it must be positive.
	Limit int
	// MaxScan bounds how many records one page reads, matching or not,
	// so that a filter that matches little cannot make one call read the
	// whole queue; zero means 10 × Limit, at least 10,000.
	MaxScan int
	// CreatedBefore, when set, keeps only what arrived before it: the
	// walk ends at the first ID that encodes a later time (IDs sort by
	// time of creation).
	CreatedBefore time.Time
}

// Page is one page of a listing.
type Page[T any] struct {
	Items []T
	// Next is the After of the next page; "" when the listing is over.
	// Items may be empty while Next is not: the page read MaxScan
	// records and none matched.
	Next string
}

func (o PageOptions) maxScan() int {
	if o.MaxScan > 0 {
		return o.MaxScan
	}
	return max(10*o.Limit, 10000)
}

// MessagePage returns a page of queued messages that keep accepts (nil:
// all), oldest first, as List would show them: damaged records as
// stand-ins, leased ones with LeasedUntil set.
func (q *Queue) MessagePage(o PageOptions, keep func(*Message) bool) (Page[*Message], error) {
	p, err := walkPage(q.db, bucketMessages, o, func(tx *bolt.Tx, k, v []byte) (*Message, bool) {
		m, err := decodeMessage(v)
		if err != nil {
			m = damaged(tx, k, err)
			q.damage.note(false, m.ID)
		} else {
			withFlush(tx, m) // flush.go
		}
		q.leasedUntil(m)
		return m, keep == nil || keep(m)
	})
	if err != nil {
		return p, fmt.Errorf("queue: list: %w", err)
	}
	return p, nil
}

// DeadPage returns a page of dead letters that keep accepts (nil: all),
// oldest first, as ListDead would show them.
func (q *Queue) DeadPage(o PageOptions, keep func(*DeadLetter) bool) (Page[*DeadLetter], error) {
	p, err := walkPage(q.db, bucketDead, o, func(tx *bolt.Tx, k, v []byte) (*DeadLetter, bool) {
		d, err := decodeDead(v)
		if err != nil {
			d = damagedDead(tx, k, err)
			q.damage.note(true, d.ID)
		}
		return d, keep == nil || keep(d)
	})
	if err != nil {
		return p, fmt.Errorf("queue: list dead: %w", err)
	}
	return p, nil
}

// walkPage reads bucket from after o.After, keeping what visit accepts,
// until the page is full, MaxScan records were read or the bucket (or
// o.CreatedBefore) ends.
func walkPage[T any](db viewer, bucket []byte, o PageOptions, visit func(tx *bolt.Tx, k, v []byte) (T, bool)) (Page[T], error) {
	var p Page[T]
	if o.Limit <= 0 {
		return p, fmt.Errorf("page limit %d: must be positive", o.Limit)
	}
	err := db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		k, v := c.First()
		if o.After != "" {
			if k, v = c.Seek([]byte(o.After)); k != nil && bytes.Equal(k, []byte(o.After)) {
				k, v = c.Next()
			}
		}
		var last []byte // the last key read: where a page cut short goes on
		for scanned := 0; k != nil; k, v = c.Next() {
			if !o.CreatedBefore.IsZero() && ValidID(string(k)) && !idTime(string(k)).Before(o.CreatedBefore) {
				return nil // every later ID arrived later still
			}
			if len(p.Items) == o.Limit || scanned == o.maxScan() {
				p.Next = string(last)
				return nil
			}
			scanned++
			last = k
			if it, ok := visit(tx, k, v); ok {
				p.Items = append(p.Items, it)
			}
		}
		return nil
	})
	return p, err
}

// FileReader reads the queue file of a relayq that is not running a page
// at a time (mailq with the daemon down), read-only, under bbolt's shared
// lock: a listing of a million messages reads one page of records, not
// the whole file as it once did.
type FileReader struct {
	db *bolt.DB
}

// OpenFileReader opens the file at path read-only, waiting at most
// lockTimeout for its lock: ErrLocked while relayq serve holds it,
// ErrDamaged for a file bbolt cannot read, ErrEmpty for a file of 0 bytes.
func OpenFileReader(path string, lockTimeout time.Duration) (*FileReader, error) {
	db, err := openReadOnly("list", path, lockTimeout) // maintenance.go
	if err != nil {
		return nil, err
	}
	return &FileReader{db: db}, nil
}

// Close releases the file.
func (r *FileReader) Close() error { return r.db.Close() }

// MessagePage is Queue.MessagePage on the file: nothing is leased, the
// relayq that wrote it having stopped.
func (r *FileReader) MessagePage(o PageOptions, keep func(*Message) bool) (Page[*Message], error) {
	p, err := walkPage(r.db, bucketMessages, o, func(tx *bolt.Tx, k, v []byte) (*Message, bool) {
		m, err := decodeMessage(v)
		if err != nil {
			m = damaged(tx, k, err)
		} else {
			withFlush(tx, m) // flush.go
		}
		return m, keep == nil || keep(m)
	})
	if err != nil {
		return p, fmt.Errorf("queue: list %s: %w", r.db.Path(), err)
	}
	return p, nil
}

// Totals is Queue.Totals on the file; a file from a relayq before the
// counters (counters.go) is read through for them.
func (r *FileReader) Totals() (Totals, error) {
	var t Totals
	err := r.db.View(func(tx *bolt.Tx) error {
		var err error
		if t, err = totalsOf(tx); err == nil {
			return nil
		}
		t = Totals{}
		if b := tx.Bucket(bucketDead); b != nil {
			t.Dead = b.Stats().KeyN
		}
		ms, err := messagesIn(tx)
		for _, m := range ms {
			t.Messages, t.Bytes = t.Messages+1, t.Bytes+m.Size
		}
		return err
	})
	if err != nil {
		return Totals{}, fmt.Errorf("queue: totals %s: %w", r.db.Path(), err)
	}
	return t, nil
}
