package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// A body is stored in the bodies bucket in one of two forms:
//
//   - a packed body (at most packedBody(pageSize) bytes, a few KiB) is one
//     or more values under "<id>/<n>" (chunkKey), each at most
//     smallBody(pageSize) bytes, beside other messages' packed chunks;
//   - a larger one is a bucket of its own named <id>, holding the body in
//     at least two chunks of at most chunkSize under their number n, a
//     big-endian uint32, so it is read back in order with a cursor and
//     never has to be held in memory whole.
//
// The point is what a delete rewrites. bbolt keeps at least two keys on a
// leaf and stores a leaf larger than a page in one run of contiguous pages.
// When bodies of any size sat side by side, deleting one rewrote the leaf
// with its neighbour in it: on a full disk, recording a delivery needed a
// free run as large as another message's body (up to 512 KiB), which a
// file fragmented by months of deliveries may not have, and the deliveries
// stalled with the disk's last free pages unusable. Now a leaf of the
// bodies bucket holds only values of at most a quarter page (packed
// chunks) and the headers of body buckets, so every leaf is one page, a
// delete rewrites single pages and frees a large body's run whole. A body
// bucket always has two chunks at least: a bucket with one small value
// would be stored inline, in its parent's leaf.
//
// Why two forms, for bytes on disk: a bucket of its own takes whole pages,
// so a 2 KiB body in one cost a 4 KiB page. Packed chunks fill the pages
// they share: their keys grow with time (queue IDs), so they are appended,
// and Put packs the leaves full (appendFill) instead of bbolt's default of
// splitting them half empty. Above packedBody the pages a bucket rounds up
// to are a small share of the body.
//
// Bodies written before these layouts (one value per chunk under
// "<id>/<n>", of any size) are read and deleted as packed ones are.

// smallBody is the largest packed chunk: four such values with their keys
// and bbolt's headers fit one page.
func smallBody(pageSize int) int {
	const pageHeader, leafElement = 16, 16
	return (pageSize-pageHeader)/4 - leafElement - (idLen + 5)
}

// packedBody is the largest body stored as packed chunks.
func packedBody(pageSize int) int { return 4 * pageSize }

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

// AppendVerifiedBody appends the stored body of m to dst and checks those
// very bytes against the checksum m's record kept, in one read
// transaction: what VerifyBody and a read of Body do in two. It is for a
// body small enough to hold whole (delivery sends one of up to 32 KiB from
// memory). When the bytes differ from the checksum it returns an error
// matching ErrCorrupt, and dst as it was, so no part of them is used. A
// missing body is checked as an empty one (so it is ErrCorrupt, as for
// VerifyBody), and is ErrNotFound when that check passes. The body of a
// record without a checksum (written before bodies had one) is appended
// unchecked.
func (q *Queue) AppendVerifiedBody(dst []byte, m *Message) ([]byte, error) {
	out := dst
	err := q.db.View(func(tx *bolt.Tx) error {
		found := false
		for v := range chunks(tx, m.ID) {
			found = true
			out = append(out, v...)
		}
		if m.BodyCRC32C != nil {
			body := out[len(dst):]
			if sum := crc32.Checksum(body, castagnoli()); sum != *m.BodyCRC32C {
				return fmt.Errorf("%w: %s: crc32c %08x of %d stored bytes, %08x of %d when queued", ErrCorrupt, m.ID, sum, len(body), *m.BodyCRC32C, m.Size)
			}
		}
		if !found {
			return fmt.Errorf("queue: body of %s: %w", m.ID, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return dst, err
	}
	return out, nil
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
func chunks(tx *bolt.Tx, id string) iter.Seq[[]byte] { return chunksFrom(tx, id, 0) }

// chunksFrom yields the stored chunks of id's body from chunk n on, in
// order, up to the first one missing, as chunk(tx, id, n), chunk(tx, id,
// n+1)… would, but with one seek for them all: a cursor walks on to the
// next key, which is the next chunk (chunkKey sorts them in order). The
// slices point into the mapped file: valid only during tx.
func chunksFrom(tx *bolt.Tx, id string, n uint32) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		bodies := tx.Bucket(bucketBodies)
		want := chunkKey(id, n)
		c := bodies.Cursor()
		if b := bodies.Bucket([]byte(id)); b != nil {
			want, c = want[len(id)+1:], b.Cursor()
		}
		num := want[len(want)-4:]
		for k, v := c.Seek(want); v != nil && bytes.Equal(k, want); k, v = c.Next() {
			if !yield(v) {
				return
			}
			n++
			binary.BigEndian.PutUint32(num, n)
		}
	}
}

// chunk is chunk n of id's body, nil past its end or when there is none.
func chunk(tx *bolt.Tx, id string, n uint32) []byte {
	bodies := tx.Bucket(bucketBodies)
	if b := bodies.Bucket([]byte(id)); b != nil {
		var k [4]byte
		binary.BigEndian.PutUint32(k[:], n)
		return b.Get(k[:])
	}
	return bodies.Get(chunkKey(id, n))
}

// hasBody reports whether id has a stored body.
func hasBody(tx *bolt.Tx, id string) bool { return chunk(tx, id, 0) != nil }

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
	bodies := tx.Bucket(bucketBodies)
	pageSize := tx.DB().Info().PageSize
	if len(body) <= packedBody(pageSize) {
		bodies.FillPercent = appendFill
		return putChunks(len(body), chunksOf(len(body), smallBody(pageSize)), func(n uint32, from, to int) error {
			return bodies.Put(chunkKey(id, n), body[from:to])
		})
	}
	b, err := bodies.CreateBucket([]byte(id))
	if err != nil {
		return err
	}
	var k [4]byte
	return putChunks(len(body), max(2, chunksOf(len(body), chunkSize)), func(n uint32, from, to int) error {
		binary.BigEndian.PutUint32(k[:], n)
		return b.Put(k[:], body[from:to])
	})
}

// chunksOf is the fewest chunks of at most max bytes that size bytes take,
// one at least (an empty body is one empty chunk).
func chunksOf(size, max int) int { return (size + max - 1) / max }

// putChunks cuts size bytes into n chunks of one size (the last may be
// shorter, none is empty unless size is 0) and calls put for each with
// its number and range.
func putChunks(size, n int, put func(n uint32, from, to int) error) error {
	n = max(n, 1)
	each := (size + n - 1) / n
	for i := range n {
		if err := put(uint32(i), min(i*each, size), min((i+1)*each, size)); err != nil {
			return err
		}
	}
	return nil
}

func deleteBody(tx *bolt.Tx, id string) error {
	bodies := tx.Bucket(bucketBodies)
	if bodies.Bucket([]byte(id)) != nil {
		return bodies.DeleteBucket([]byte(id))
	}
	// One cursor for every chunk, seeking each anew: a bbolt cursor that
	// deletes stands on the key after the deleted one, so Next would skip
	// it. A cursor's seek reuses its stack; Bucket.Delete makes a new
	// cursor per key.
	c, k := bodies.Cursor(), chunkKey(id, 0)
	for n := uint32(1); ; n++ {
		if got, v := c.Seek(k); v == nil || !bytes.Equal(got, k) {
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
		binary.BigEndian.PutUint32(k[len(id)+1:], n)
	}
}

// Body returns a reader over the stored body of message (or dead letter) id.
// Each Read copies as many chunks as fit into the caller's buffer in one
// short read transaction, straight from the mapped file, so no
// transaction is held while the caller writes to the network (a long
// reader would stall every writer; reliability.md §2.4) and a body of a
// few KiB costs one transaction and no buffer of its own.
func (q *Queue) Body(id string) io.Reader {
	return &bodyReader{q: q, id: id}
}

type bodyReader struct {
	q    *Queue
	id   string
	next uint32 // the chunk Read goes on with
	off  int    // bytes of chunk next already read
	done bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, found := 0, false
	err := r.q.db.View(func(tx *bolt.Tx) error {
		for v := range chunksFrom(tx, r.id, r.next) {
			found = true
			if r.off > len(v) {
				return fmt.Errorf("queue: body of %s: chunk %d changed while read", r.id, r.next)
			}
			c := copy(p[n:], v[r.off:])
			n += c
			if r.off += c; r.off < len(v) {
				return nil // p is full
			}
			r.next, r.off = r.next+1, 0
			if n == len(p) {
				return nil
			}
		}
		if !found && r.next == 0 {
			return fmt.Errorf("queue: body of %s: %w", r.id, ErrNotFound)
		}
		r.done = true
		return nil
	})
	switch {
	case err != nil:
		return n, err // the bytes copied before it are p's and accounted for in next, off
	case n == 0 && r.done:
		return 0, io.EOF
	}
	return n, nil
}
