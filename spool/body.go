package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// errTooLarge is what a normalizer's Write returns once its output passes
// the limit.
var errTooLarge = errors.New("spool: message too large")

// normalizer collects a message body so that its only line ending is CRLF,
// whatever came in: CRLF stays, a bare LF and a bare CR each become CRLF.
// Stored bodies are then safe to dot-stuff and send: no bare LF or CR is
// left that a lenient relay could read as the end of DATA (SMTP smuggling,
// reliability.md §3.7). On the way it notes NUL and 8-bit octets.
//
// It is an io.Writer, so a body can be streamed into it with io.Copy.
type normalizer struct {
	buf      []byte
	max      int64    // largest output in bytes; 0 = no limit
	mem      *memHold // the body's reservation from the memory budget; nil = none
	cr       bool     // the last byte was a CR whose line ending is not yet written
	nul      bool     // the body holds a NUL octet
	eightBit bool     // the body holds an octet >= 0x80
}

func (n *normalizer) Write(p []byte) (int, error) {
	written := len(p)
	if err := n.reserve(len(p)); err != nil {
		return 0, err
	}
	for len(p) > 0 {
		if n.cr {
			n.cr = false
			n.buf = append(n.buf, '\r', '\n')
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		i := indexLineEnd(p)
		if i < 0 {
			n.text(p)
			break
		}
		n.text(p[:i])
		if p[i] == '\r' {
			n.cr = true
		} else {
			n.buf = append(n.buf, '\r', '\n')
		}
		p = p[i+1:]
	}
	if n.max > 0 && int64(len(n.buf)) > n.max {
		return 0, errTooLarge
	}
	return written, nil
}

// crlfWriter writes to a normalizer bytes that are normalised already
// (wire.readData's: every CR and LF in a CRLF pair, none split between two
// writes), for which Write's cutting at every line ending (a call and two
// scans a line, most of reading a body) changes nothing: the bytes are
// checked and copied in one piece.
type crlfWriter struct{ n *normalizer }

func (w crlfWriter) Write(p []byte) (int, error) {
	n := w.n
	if n.cr { // cannot happen: an earlier write ended in the middle of a CRLF
		return n.Write(p)
	}
	if err := n.reserve(len(p)); err != nil {
		return 0, err
	}
	n.text(p)
	if n.max > 0 && int64(len(n.buf)) > n.max {
		return 0, errTooLarge
	}
	return len(p), nil
}

// reserve makes sure the memory budget covers the buffer once p bytes of
// input are added (each may become two). It takes the budget's lock only
// when the buffer outgrows its reservation, a chunk (64 KiB) at a time;
// it never asks for more than the size limit, past which Write fails
// anyway.
func (n *normalizer) reserve(p int) error {
	if n.mem == nil {
		return nil
	}
	want := int64(len(n.buf)) + 2*int64(p) + 2
	if n.max > 0 {
		want = min(want, n.max)
	}
	if want <= n.mem.held {
		return nil
	}
	return n.mem.grow(want)
}

// text appends bytes that hold no CR or LF (or only in CRLF pairs, from
// crlfWriter).
func (n *normalizer) text(p []byte) {
	if !n.nul && bytes.IndexByte(p, 0) >= 0 {
		n.nul = true
	}
	if !n.eightBit && hasEightBit(p) {
		n.eightBit = true
	}
	if n.buf == nil {
		n.buf = takeBodyBuffer()
	}
	n.buf = append(n.buf, p...)
}

// hasEightBit reports whether p holds an octet >= 0x80, eight bytes at a
// time.
func hasEightBit(p []byte) bool {
	for len(p) >= 8 {
		if binary.LittleEndian.Uint64(p)&0x8080808080808080 != 0 {
			return true
		}
		p = p[8:]
	}
	for _, c := range p {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// indexLineEnd is the index of the first CR or LF in p, or -1. It looks
// for each with bytes.IndexByte (vectorised), not bytes.IndexAny (a byte at
// a time: the largest part of reading a body), a window at a time, so that
// text with one kind of line ending is not scanned to its end for the
// other at every line.
func indexLineEnd(p []byte) int {
	const window = 4096
	for off := 0; off < len(p); off += window {
		w := p[off:min(len(p), off+window)]
		if i := bytes.IndexByte(w, '\n'); i >= 0 {
			w = w[:i]
			if j := bytes.IndexByte(w, '\r'); j >= 0 {
				return off + j
			}
			return off + i
		}
		if j := bytes.IndexByte(w, '\r'); j >= 0 {
			return off + j
		}
	}
	return -1
}

// Body buffers are reused: a normalizer's buffer is garbage once
// stampMessage has copied it (with the Received header in front), so the
// session gives it back (release), and the stamped copy, also taken from
// here, is garbage once queue.Put has returned (giveBodyBuffer). Buffers
// that grew past maxPooledBody are left to the collector, so that one
// large message does not stay in memory.
const (
	pooledBody    = 16 << 10
	maxPooledBody = 256 << 10
)

var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, pooledBody); return &b }}

func takeBodyBuffer() []byte { return (*bodyBuffers.Get().(*[]byte))[:0] }

// giveBodyBuffer gives b back for another body, unless it grew past
// maxPooledBody; b is not to be used after it.
func giveBodyBuffer(b []byte) {
	if b != nil && cap(b) <= maxPooledBody {
		b = b[:0]
		bodyBuffers.Put(&b)
	}
}

// release gives the normalizer's buffer back for another body; the bytes
// body returned are not to be used after it.
func (n *normalizer) release() {
	giveBodyBuffer(n.buf)
	n.buf = nil
}

// body ends the input and returns the normalised bytes. A body that is not
// empty ends with CRLF (a CR left at the very end becomes CRLF; a last line
// without one gets it), so the stored bytes are exactly what goes out
// before the final dot.
func (n *normalizer) body() ([]byte, error) {
	if n.cr {
		n.cr = false
		n.buf = append(n.buf, '\r', '\n')
	}
	if len(n.buf) > 0 && !bytes.HasSuffix(n.buf, []byte("\r\n")) {
		n.buf = append(n.buf, '\r', '\n')
	}
	if n.max > 0 && int64(len(n.buf)) > n.max {
		return nil, errTooLarge
	}
	return n.buf, nil
}

// readNormalized reads r to its end through a normalizer.
func readNormalized(r io.Reader, max int64) (*normalizer, []byte, error) {
	return readReserved(r, max, nil)
}

// readData reads the DATA section of c through a normalizer, straight from
// the network (wire.readData), with the body's buffer reserved from the
// memory budget through mem, as readReserved does.
func readData(c *conn, max int64, maxLine int, mem *memHold) (*normalizer, []byte, error) {
	n := &normalizer{max: max, mem: mem}
	if err := c.wire.readData(crlfWriter{n}, maxLine, c.readNet); err != nil {
		return n, nil, err
	}
	body, err := n.body()
	return n, body, err
}

// readReserved is readNormalized with the body's buffer reserved from the
// memory budget through mem (memory.go): when the budget has no room, it
// fails with errNoMemory or errOverShare.
func readReserved(r io.Reader, max int64, mem *memHold) (*normalizer, []byte, error) {
	n := &normalizer{max: max, mem: mem}
	if _, err := io.Copy(n, r); err != nil {
		return n, nil, err
	}
	body, err := n.body()
	return n, body, err
}
