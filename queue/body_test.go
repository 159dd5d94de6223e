package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestBodyLayouts: a small body is a value beside others, one of a few KiB
// is packed chunks of at most a quarter page beside others, a larger one a
// bucket of its own in two chunks at least, and a body written in the old
// layout (one value per chunk, of any size) is still read, checked and
// deleted with its message. Each reads back as it was put; none is left
// behind once delivered.
func TestBodyLayouts(t *testing.T) {
	q, _ := openTest(t, Options{})
	small := put(t, q, "short\r\n", "a@x.org")
	packed := put(t, q, strings.Repeat("0123456789abcdef\r\n", 3000/18), "d@x.org")
	large := put(t, q, strings.Repeat("0123456789abcdef\r\n", 3*chunkSize/18), "b@x.org")
	oldBody := strings.Repeat("old layout\r\n", chunkSize/12+1000)
	old := put(t, q, oldBody, "c@x.org")
	// Rewrite old's body the way bodies were stored before.
	err := q.commit.commit(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBodies)
		if err := b.DeleteBucket([]byte(old)); err != nil {
			return err
		}
		for n, at := uint32(0), 0; at < len(oldBody); n, at = n+1, at+chunkSize {
			if err := b.Put(chunkKey(old, n), []byte(oldBody[at:min(at+chunkSize, len(oldBody))])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = q.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBodies)
		if b.Get(chunkKey(small, 0)) == nil || b.Bucket([]byte(small)) != nil {
			t.Errorf("the small body is not a plain value")
		}
		pageSize := tx.DB().Info().PageSize
		for n := range uint32(4) {
			if v := b.Get(chunkKey(packed, n)); len(v) == 0 || len(v) > smallBody(pageSize) {
				t.Errorf("packed chunk %d: %d bytes, want 1 to %d", n, len(v), smallBody(pageSize))
			}
		}
		if b.Get(chunkKey(packed, 4)) != nil || b.Bucket([]byte(packed)) != nil {
			t.Errorf("the 3000-byte body is not 4 packed chunks")
		}
		if nested := b.Bucket([]byte(large)); nested == nil || nested.Stats().KeyN != 3 {
			t.Errorf("the large body is not a bucket of 3 chunks")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{small, packed, large, old} {
		m, err := q.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(q.Body(id))
		if err != nil || int64(len(got)) != m.Size {
			t.Errorf("body of %s: %d bytes, %v; want %d", id, len(got), err, m.Size)
		}
		if err := q.VerifyBody(m); err != nil {
			t.Errorf("VerifyBody(%s): %v", id, err)
		}
	}
	if p := q.Check(); len(p) != 0 {
		t.Fatalf("Check: %v", p)
	}
	if n := deliverAll(t, q); n != 4 {
		t.Fatalf("delivered %d, want 4", n)
	}
	err = q.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketBodies).Stats().KeyN; n != 0 {
			t.Errorf("%d body keys left once every message was delivered", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBodyReadSizes: whatever the caller's buffer, Body gives back the
// body byte for byte, in each of its layouts (empty, one packed chunk,
// several, a bucket of its own at the smallest and over three chunks),
// across chunk ends, and the io.EOF only after the last byte.
func TestBodyReadSizes(t *testing.T) {
	q, _ := openTest(t, Options{})
	rnd := rand.New(rand.NewPCG(1, 2))
	var bodies [][]byte
	var ids []string
	for _, size := range []int{0, 7, 3000, packedBody(4096), packedBody(4096) + 1, 3*chunkSize + 5} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(rnd.Uint32())
		}
		id, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, body)
		if err != nil {
			t.Fatal(err)
		}
		bodies, ids = append(bodies, body), append(ids, id)
	}
	for i, id := range ids {
		for _, size := range []int{1, 7, 979, 4096, 32 << 10, 1 << 20} {
			r, buf := q.Body(id), make([]byte, size)
			var got []byte
			for {
				n, err := r.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("body %d (%d bytes), reads of %d: %v", i, len(bodies[i]), size, err)
				}
				if n == 0 {
					t.Fatalf("body %d, reads of %d: a read of nothing before the end", i, size)
				}
			}
			if !bytes.Equal(got, bodies[i]) {
				t.Errorf("body %d (%d bytes), reads of %d: %d bytes back, not the same", i, len(bodies[i]), size, len(got))
			}
		}
	}
	if _, err := io.ReadAll(q.Body("1HVQKJCE0B24SXNCNDTY")); !errors.Is(err, ErrNotFound) {
		t.Errorf("body of an unknown ID: %v, want ErrNotFound", err)
	}
}

// TestAppendVerifiedBody: the body appended is the stored one byte for
// byte in every layout, after what dst held; a body whose bytes changed
// (in any chunk) or that is missing is ErrCorrupt and leaves dst as it
// was, so a caller has nothing of it to send; a record without a checksum
// gets its body unchecked, or ErrNotFound when there is none.
func TestAppendVerifiedBody(t *testing.T) {
	q, _ := openTest(t, Options{})
	bodies := map[string]string{
		"empty":  "",
		"small":  "short\r\n",
		"packed": strings.Repeat("0123456789abcdef\r\n", 3000/18),
		"bucket": strings.Repeat("0123456789abcdef\r\n", 3*chunkSize/18),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			id := put(t, q, body, "a@x.org")
			m, err := q.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			dst := []byte("before|")
			got, err := q.AppendVerifiedBody(dst, m)
			if err != nil || string(got) != "before|"+body {
				t.Fatalf("AppendVerifiedBody = %d bytes, %v; want the prefix and the %d bytes put", len(got), err, len(body))
			}
			if len(body) == 0 {
				return
			}
			last := uint32(0)
			for chunkExists(t, q, id, last+1) {
				last++
			}
			scribbleBody(t, q, id, last, flip(0))
			got, err = q.AppendVerifiedBody(dst, m)
			if !errors.Is(err, ErrCorrupt) || string(got) != "before|" {
				t.Fatalf("corrupt chunk %d: AppendVerifiedBody = %q, %v; want dst as it was and ErrCorrupt", last, got, err)
			}
			unchecked := *m
			unchecked.BodyCRC32C = nil
			if got, err := q.AppendVerifiedBody(nil, &unchecked); err != nil || len(got) != len(body) {
				t.Errorf("without a checksum: %d bytes, %v; want the %d stored, unchecked", len(got), err, len(body))
			}
			if err := q.commit.commit(func(tx *bolt.Tx) error { return deleteBody(tx, id) }); err != nil {
				t.Fatal(err)
			}
			if got, err := q.AppendVerifiedBody(dst, m); !errors.Is(err, ErrCorrupt) || string(got) != "before|" {
				t.Errorf("missing body: %q, %v; want ErrCorrupt", got, err)
			}
			if _, err := q.AppendVerifiedBody(nil, &unchecked); !errors.Is(err, ErrNotFound) {
				t.Errorf("missing body without a checksum: %v; want ErrNotFound", err)
			}
			if _, err := q.Delete([]string{id}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// chunkExists reports whether id's body has a chunk n.
func chunkExists(t *testing.T, q *Queue, id string, n uint32) bool {
	t.Helper()
	var ok bool
	if err := q.db.View(func(tx *bolt.Tx) error { ok = chunk(tx, id, n) != nil; return nil }); err != nil {
		t.Fatal(err)
	}
	return ok
}
