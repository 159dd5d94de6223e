package queue

import (
	"encoding/binary"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Bodies are stored in chunks of at most chunkSize under "<id>/<n>", n a
// big-endian uint32, so a body is read back in order with a cursor prefix
// scan and never has to be held in memory whole.

func chunkKey(id string, n uint32) []byte {
	k := make([]byte, len(id)+1+4)
	copy(k, id)
	k[len(id)] = '/'
	binary.BigEndian.PutUint32(k[len(id)+1:], n)
	return k
}

func putBody(tx *bolt.Tx, id string, body []byte) error {
	b := tx.Bucket(bucketBodies)
	for n := uint32(0); ; n++ {
		size := min(chunkSize, len(body))
		if err := b.Put(chunkKey(id, n), body[:size]); err != nil {
			return err
		}
		body = body[size:]
		if len(body) == 0 {
			return nil
		}
	}
}

func deleteBody(tx *bolt.Tx, id string) error {
	b := tx.Bucket(bucketBodies)
	for n := uint32(0); ; n++ {
		k := chunkKey(id, n)
		if b.Get(k) == nil {
			return nil
		}
		if err := b.Delete(k); err != nil {
			return err
		}
	}
}

// Body returns a reader over the stored body of message (or dead letter) id.
// It reads one chunk at a time, each in a short read transaction, and copies
// it out, so no transaction is held while the caller writes to the network
// (a long reader would stall every writer; reliability.md §2.4).
func (q *Queue) Body(id string) io.Reader {
	return &bodyReader{q: q, id: id}
}

type bodyReader struct {
	q    *Queue
	id   string
	next uint32
	buf  []byte
	done bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if err := r.load(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *bodyReader) load() error {
	return r.q.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBodies).Get(chunkKey(r.id, r.next))
		if v == nil {
			if r.next == 0 {
				return fmt.Errorf("queue: body of %s: %w", r.id, ErrNotFound)
			}
			r.done = true
			return nil
		}
		r.buf = append(r.buf[:0], v...)
		r.next++
		return nil
	})
}
