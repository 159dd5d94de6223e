package spool

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
)

// Replies to a pipelining client go out together. go-smtp writes and
// flushes every reply line on its own, one system call each: a client that
// sends MAIL, RCPT and DATA in one packet (RFC 2920; Postfix's smtp client
// does) gets three writes, and the reply to EHLO one per line. conn holds a
// reply when go-smtp is sure to go on without waiting for anyone:
//
//   - it is a line of a multi-line reply that is not the last (go-smtp
//     writes the next line at once), or
//   - the client's next command is already read (wire.raw), and no message
//     is being taken in;
//
// and writes whatever it holds, in one write, before anything that can
// wait:
//
//   - before every read from the network (conn.readNet): a client that
//     waits for a reply before it sends more has it before the session
//     waits for the client, so a client that does not pipeline gets every
//     reply when it did before;
//   - when the session begins to take a message (session.Data, for DATA
//     and BDAT), before it may wait for memory or for the commit, and
//     nothing is held until Data returns: for BDAT, go-smtp's own waits (a
//     pipe to Data, then Data's result) all fall inside Data;
//   - at Close (the 221 to QUIT, a 421).
//
// A pipelined MAIL, RCPT, DATA then gets its 250, 250 and 354 in one write
// (TestPipelinedRepliesTogether), and nothing else waits on a held reply
// (TestRepliesNeverHeldFromAWaitingClient).
type heldReplies struct {
	mu  sync.Mutex // go-smtp runs BDAT's Data in a goroutine of its own
	buf []byte
	err error // a write failed: every later one fails the same way
	// taking: a message is being taken in (session.Data); nothing is held.
	taking atomic.Bool
}

// write writes p to w, or holds it with what is held already when hold is
// true and no message is being taken in.
func (h *heldReplies) write(w io.Writer, p []byte, hold bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return h.err
	}
	if hold && !h.taking.Load() {
		h.buf = append(h.buf, p...)
		return nil
	}
	if len(h.buf) == 0 {
		_, h.err = w.Write(p)
		return h.err
	}
	h.buf = append(h.buf, p...)
	return h.flushLocked(w)
}

// flush writes what is held to w.
func (h *heldReplies) flush(w io.Writer) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.flushLocked(w)
}

func (h *heldReplies) flushLocked(w io.Writer) error {
	if h.err != nil || len(h.buf) == 0 {
		return h.err
	}
	_, h.err = w.Write(h.buf)
	h.buf = h.buf[:0]
	return h.err
}

// beginTaking writes what is held and holds nothing until endTaking: the
// session is about to take a message in, and may wait.
func (h *heldReplies) beginTaking(w io.Writer) {
	h.taking.Store(true)
	h.flush(w)
}

func (h *heldReplies) endTaking() { h.taking.Store(false) }

// mayHold reports whether reply p, which go-smtp is about to write, may
// wait for the next one (see heldReplies).
func (c *conn) mayHold(p []byte) bool {
	return continued(p) || len(c.wire.raw) > 0
}

// continued reports whether the last line of p is a line of a multi-line
// reply that more lines follow ("250-…").
func continued(p []byte) bool {
	p = bytes.TrimSuffix(p, []byte("\r\n"))
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		p = p[i+1:]
	}
	return len(p) >= 4 && p[3] == '-'
}
