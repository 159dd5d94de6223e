package queue

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"sync"

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

// castagnoli is the CRC-32C table: the polynomial with hardware support
// (SSE 4.2, ARMv8), so checking a body costs far less than sending it.
// Made on first use: `relayq sendmail` links this package and must not pay
// for the table at start (TestPackageInitsStayLight).
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// bodySum is the checksum a new record keeps of its body (Message.BodyCRC32C).
func bodySum(body []byte) *uint32 {
	sum := crc32.Checksum(body, castagnoli())
	return &sum
}

// VerifyBody checks the stored body of m against the checksum its record
// kept, in one read transaction (a body is read from the mapped file, not
// copied). It returns an error matching ErrCorrupt when they differ and
// nil for a record written before bodies had a checksum. Delivery calls
// it before it starts a transaction, so a damaged body never reaches the
// relay.
func (q *Queue) VerifyBody(m *Message) error {
	if m.BodyCRC32C == nil {
		return nil
	}
	return q.db.View(func(tx *bolt.Tx) error {
		if bad := bodyMismatch(tx, m); bad != "" {
			return fmt.Errorf("%w: %s: %s", ErrCorrupt, m.ID, bad)
		}
		return nil
	})
}

// bodyMismatch says how the stored body of m differs from its checksum;
// "" when it matches or m has none.
func bodyMismatch(tx *bolt.Tx, m *Message) string {
	if m.BodyCRC32C == nil {
		return ""
	}
	var sum uint32
	var size int64
	for v := range chunks(tx, m.ID) {
		sum = crc32.Update(sum, castagnoli(), v)
		size += int64(len(v))
	}
	if sum == *m.BodyCRC32C {
		return ""
	}
	return fmt.Sprintf("crc32c %08x of %d stored bytes, %08x of %d when queued", sum, size, *m.BodyCRC32C, m.Size)
}

// bodySize is the length of the stored body of id.
func bodySize(tx *bolt.Tx, id string) int64 {
	var size int64
	for v := range chunks(tx, id) {
		size += int64(len(v))
	}
	return size
}

// chunks yields the stored chunks of id's body in order. The slices point
// into the mapped file: valid only during tx.
func chunks(tx *bolt.Tx, id string) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		b := tx.Bucket(bucketBodies)
		for n := uint32(0); ; n++ {
			v := b.Get(chunkKey(id, n))
			if v == nil || !yield(v) {
				return
			}
		}
	}
}

// chunkID is the message ID of chunk key k. The chunk number is binary
// and may hold a '/' byte itself (chunk 47), so the ID is found by the
// key's fixed tail, not by searching for the slash.
func chunkID(k []byte) ([]byte, bool) {
	i := len(k) - 5
	if i < 1 || k[i] != '/' {
		return nil, false
	}
	return k[:i], true
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
