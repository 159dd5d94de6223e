package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"relayq/queue"
	"relayq/transport"
	"relayq/transport/smtptest"
)

// TestCorruptBodyNeverReachesTheRelay: bodies whose last stored bytes
// changed after they were queued — one sent from memory (5 KB, and 30 KiB
// in a bucket of its own) and one streamed from the queue (100 KiB) — are
// dead-lettered as corrupt and the relay sees nothing of them, not even
// their envelope; the intact messages of the same sizes arrive byte for
// byte. Both with DATA and with BDAT (a relay offering CHUNKING).
func TestCorruptBodyNeverReachesTheRelay(t *testing.T) {
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) { testCorruptBody(t, smtptest.Options{Chunking: chunking}) })
	}
}

func testCorruptBody(t *testing.T, relay smtptest.Options) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := queue.Open(path, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{5000, 30 << 10, 100 << 10}
	bodies := map[string]string{}  // intact message ID → body
	corrupt := map[string]string{} // corrupt message ID → its recipient
	for _, size := range sizes {
		for _, bad := range []bool{false, true} {
			rcpt := fmt.Sprintf("intact-%d@there.example", size)
			if bad {
				rcpt = fmt.Sprintf("corrupt-%d@there.example", size)
			}
			body := "Subject: " + rcpt + "\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", size/18)
			id, err := q.Put(context.Background(), queue.Envelope{From: "cron@here.example", Recipients: []string{rcpt}}, []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if bad {
				corrupt[id] = rcpt
			} else {
				bodies[id] = body
			}
		}
	}
	q.Close()
	for id := range corrupt {
		flipLastBodyByte(t, path, id)
	}
	q, err = queue.Open(path, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := startOn(t, q, relay, RetryPolicy{}, time.Second)
	r.emptied(t)

	got := r.relay.Messages()
	if len(got) != len(bodies) {
		t.Errorf("the relay got %d messages, want the %d intact ones", len(got), len(bodies))
	}
	want := map[string]bool{}
	for _, b := range bodies {
		want[b] = true
	}
	for _, m := range got {
		if !want[string(m.Body)] {
			t.Errorf("the relay got a message that is not one of the intact ones (%d bytes, to %v)", len(m.Body), m.To)
		}
	}
	for _, c := range r.relay.Commands() {
		for _, rcpt := range corrupt {
			if strings.Contains(c, rcpt) {
				t.Errorf("the relay saw %q of a corrupt message", c)
			}
		}
	}
	for id := range corrupt {
		d, err := r.q.GetDead(id)
		if err != nil || d.Reason != queue.ReasonCorrupt {
			t.Errorf("dead letter of corrupt %s: %+v, %v; want reason corrupt", id, d, err)
		}
	}
	if _, err := r.q.PurgeDead(0); err != nil { // the dead letters keep the corrupt bodies, which Check names
		t.Fatal(err)
	}
}

// flipLastBodyByte inverts the last byte of the last stored chunk of id's
// body, in the closed queue file at path.
func flipLastBodyByte(t *testing.T, path, id string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		bodies := tx.Bucket([]byte("bodies"))
		b, prefix := bodies, []byte(id+"/")
		if nested := bodies.Bucket([]byte(id)); nested != nil {
			b, prefix = nested, nil
		}
		var last []byte
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && v != nil; k, v = c.Next() {
			last = bytes.Clone(k)
		}
		if last == nil {
			return errors.New("no chunk found")
		}
		v := bytes.Clone(b.Get(last))
		v[len(v)-1] ^= 0xff
		return b.Put(last, v)
	})
	if err != nil {
		t.Fatalf("scribbling on the body of %s: %v", id, err)
	}
}

// BenchmarkIntactBody is what an attempt spends on its body before the
// transport's writes: the check and one send's read of a 5 KB body into
// the transport's 32 KiB buffer (guard: allocs/op and B/op; the pooled
// buffer is not allocated per attempt).
func BenchmarkIntactBody(b *testing.B) {
	q, err := queue.Open(filepath.Join(b.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Put(context.Background(), queue.Envelope{From: "cron@here.example", Recipients: []string{"a@there.example"}}, bytes.Repeat([]byte("x"), 5000)); err != nil {
		b.Fatal(err)
	}
	ls, err := q.Lease(1)
	if err != nil || len(ls) != 1 {
		b.Fatalf("lease: %v, %v", ls, err)
	}
	d := New(Options{Queue: q, Relay: "test"})
	buf := make([]byte, 32<<10)
	for b.Loop() {
		body, ok := d.intactBody(ls[0], "test")
		if !ok {
			b.Fatal("body not intact")
		}
		if n, err := io.ReadFull(body.reader(), buf[:5000]); err != nil || n != 5000 {
			b.Fatal(n, err)
		}
		body.release()
	}
	if err := q.Release(ls[0]); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSendPart is one part of an attempt as the workers send it: a
// 5 KB message from memory to a pooled connection of a relay offering
// PIPELINING and CHUNKING (smtptest, in this process: its allocations
// count too). Guard: allocs/op and B/op.
func BenchmarkSendPart(b *testing.B) {
	q, err := queue.Open(filepath.Join(b.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	relay := smtptest.NewServer(b, smtptest.Options{Chunking: true})
	tr := transport.New(transport.Options{Network: relay.Network(), Address: relay.Addr(), IgnoreTLS: true, MaxMessages: 1 << 30})
	defer tr.Close()
	if _, err := q.Put(context.Background(), queue.Envelope{From: "cron@here.example", Recipients: []string{"a@there.example"}}, bytes.Repeat([]byte("x"), 5000)); err != nil {
		b.Fatal(err)
	}
	ls, err := q.Lease(1)
	if err != nil || len(ls) != 1 {
		b.Fatalf("lease: %v, %v", ls, err)
	}
	d := New(Options{Queue: q, Transport: tr, Relay: "test"})
	relayInUse := d.use()
	defer d.done(relayInUse)
	body, ok := d.intactBody(ls[0], "test")
	if !ok {
		b.Fatal("body not intact")
	}
	g := groups(ls[0].Message, relayInUse.Routes)[0]
	for b.Loop() {
		if p, _ := d.sendPart(context.Background(), ls[0], relayInUse, g, body); p.verdicts["a@there.example"].result != queue.Delivered {
			b.Fatalf("not delivered: %+v", p)
		}
	}
	body.release()
	if err := q.Release(ls[0]); err != nil {
		b.Fatal(err)
	}
}
