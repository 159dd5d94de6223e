package delivery

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"relayq/queue"
)

// An attempt checks the leased message's body against its checksum before
// anything is sent, so a corrupt body never reaches the relay, not even in
// part. A body of up to inMemoryBody bytes (most mail) is read once, into
// memory, and checked there (queue.AppendVerifiedBody): every send of the
// attempt (a part per route, the next relay on failover) goes from those
// bytes. A larger one is checked in the mapped file first (VerifyBody) and
// then read again, a window at a time, by each send, so that no attempt
// holds a large body in memory.

// inMemoryBody is the largest body an attempt holds in memory: the
// transport reads a message of up to 32 KiB whole anyway, to send it as
// one BDAT chunk (transport/chunking.go maxChunk).
const inMemoryBody = 32 << 10

// bodyBuffers hold the bodies of attempts in flight, one each.
var bodyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, inMemoryBody)
	return &b
}}

// attemptBody is the body the sends of one attempt read.
type attemptBody struct {
	q   *queue.Queue
	id  string
	mem *[]byte // the checked body; nil: each send reads the queue's
}

// reader is the body for one send.
func (b attemptBody) reader() io.Reader {
	if b.mem == nil {
		return b.q.Body(b.id)
	}
	return bytes.NewReader(*b.mem)
}

// release gives the buffer back once the attempt's sends have returned.
func (b attemptBody) release() {
	if b.mem != nil && cap(*b.mem) == inMemoryBody { // not one that grew: a body longer than its record said
		bodyBuffers.Put(b.mem)
	}
}

// intactBody checks the leased message's body against its checksum and
// returns it for the attempt's sends. A corrupt one goes to the dead
// letters with reason corrupt, and its sender gets a failure notice;
// intactBody then reports false, as it does when the body cannot be read.
func (d *Deliverer) intactBody(l *queue.Lease, relay string) (attemptBody, bool) {
	b := attemptBody{q: d.opts.Queue, id: l.ID}
	var err error
	if l.Size <= inMemoryBody {
		mem := bodyBuffers.Get().(*[]byte)
		if *mem, err = b.q.AppendVerifiedBody((*mem)[:0], l.Message); err == nil {
			b.mem = mem
			return b, true
		}
		bodyBuffers.Put(mem)
	}
	if err == nil || !errors.Is(err, queue.ErrCorrupt) {
		// Large, or not read (a store failure, a body missing from a
		// record without checksum): as for a large body, so the
		// outcome is the one the streaming path has always had.
		if err = b.q.VerifyBody(l.Message); err == nil {
			return b, true
		}
	}
	// On a store failure the lease is kept, not released: the message
	// is tried again when the lease runs out, instead of at once and in
	// a loop while the store keeps failing (a full disk).
	if !errors.Is(err, queue.ErrCorrupt) {
		d.opts.Logger.Error("cannot verify the body; will retry when the lease runs out", "id", l.ID, "err", err)
		return b, false
	}
	rec, rerr := d.opts.Queue.DeadCorrupt(l, err)
	if rerr != nil {
		d.opts.Logger.Error("cannot dead-letter a corrupt message; it stays queued, unsent, until the lease runs out", "id", l.ID, "err", rerr)
		return b, false
	}
	d.log.corrupt(l.Message, relay, err)
	d.opts.Notifier.After(rec) // notice.go

	d.opts.Metrics.corrupt(l.Message, d.relayID(relay)) // metrics.go
	return b, false
}
