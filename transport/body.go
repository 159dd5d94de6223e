package transport

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// The message body goes to the relay dot-stuffed, in writes of up to
// bodyChunk bytes, not through go-smtp's DataCommand: that is
// net/textproto's dotWriter, which copies the body into a 4 KiB buffer one
// byte at a time (a tenth of the daemon's CPU under load). stuffer writes
// exactly the bytes the dotWriter would (TestStufferMatchesDotWriter), so
// what the relay, the transcript and the conversation log see is
// unchanged: a dot at the start of a line doubled, a bare LF sent as CRLF,
// anything else as it is.
//
// The DataCommand still ends the body: its Close writes the final dot
// after what it believes is a body of nothing but a line in progress
// ("\r\n.\r\n"), then reads the reply. So that the wire carries the body
// followed by the terminator the dotWriter would have chosen, writeBody
// holds back the end of the stuffed body that this "\r\n" repeats: the
// CRLF after the last line, or a trailing CR (the dotWriter would then
// send "\n.\r\n").

// bodyChunk is how many bytes of the body writeBody reads at a time, and
// writes at least (but the last write). Stuffing at most doubles what is
// read (every byte a bare LF), so the output buffer holds up to
// 3×bodyChunk.
const bodyChunk = 32 << 10

// bodyBuffers are writeBody's buffers, shared by all connections: a
// worker holds them only while it writes a body.
var bodyBuffers = sync.Pool{New: func() any {
	return &bodyBuffer{in: make([]byte, bodyChunk), out: make([]byte, 0, 3*bodyChunk+2)}
}}

type bodyBuffer struct{ in, out []byte }

// stuffState is where stuffer is in the body, as textproto's dotWriter
// tracks it.
type stuffState uint8

const (
	stuffBegin     stuffState = iota // nothing written yet
	stuffLineStart                   // after a LF
	stuffCR                          // after a CR
	stuffData                        // within a line
)

// stuffer dot-stuffs a body as textproto's dotWriter does; with plain set,
// it does all the dotWriter does but the stuffing (chunking.go).
type stuffer struct {
	state stuffState
	plain bool
}

// stuff appends p, stuffed, to out.
func (s *stuffer) stuff(out, p []byte) []byte {
	for len(p) > 0 {
		switch s.state {
		case stuffBegin, stuffLineStart:
			if p[0] == '.' && !s.plain {
				out = append(out, '.')
			}
			s.state = stuffData
		case stuffCR:
			// A CR then anything but LF is text (and so is a second CR:
			// the dotWriter does not look for a LF after it).
			out = append(out, p[0])
			if p[0] == '\n' {
				s.state = stuffLineStart
			} else {
				s.state = stuffData
			}
			p = p[1:]
			continue
		}
		i := indexLineEnd(p)
		if i < 0 {
			return append(out, p...)
		}
		out = append(out, p[:i]...)
		if p[i] == '\r' {
			out, s.state = append(out, '\r'), stuffCR
		} else {
			out, s.state = append(out, '\r', '\n'), stuffLineStart
		}
		p = p[i+1:]
	}
	return out
}

// indexLineEnd is the index of the first CR or LF in p, or -1. It looks
// for each with bytes.IndexByte (vectorised), not bytes.IndexAny (a byte at
// a time), a window at a time, so that text with one kind of line ending
// is not scanned to its end for the other at every line. (spool has the
// same function for the same reason; transport imports nothing of relayq.)
func indexLineEnd(p []byte) int {
	const window = 4096
	for off := 0; off < len(p); off += window {
		w := p[off:min(len(p), off+window)]
		if i := bytes.IndexByte(w, '\n'); i >= 0 {
			if j := bytes.IndexByte(w[:i], '\r'); j >= 0 {
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

// heldBack is how many bytes at the end of the stuffed body so far the
// DataCommand's "\r\n.\r\n" would repeat, were the body to end here.
func (s *stuffer) heldBack() int {
	switch s.state {
	case stuffLineStart:
		return 2 // "\r\n"
	case stuffCR:
		return 1 // "\r"
	}
	return 0
}

// writeBody writes body to w, dot-stuffed, without the end heldBack says
// the DataCommand's Close writes, and then end: nil when the caller then
// closes the DataCommand; dotEnd when there is none (pipeline.go), so that
// the final dot goes out with the last of the body. A failure to read
// body is a *bodyReadError.
func writeBody(w io.Writer, body io.Reader, end []byte) error {
	buf := bodyBuffers.Get().(*bodyBuffer)
	defer bodyBuffers.Put(buf)
	var s stuffer
	out := buf.out[:0]
	for {
		n, rerr := body.Read(buf.in)
		out = s.stuff(out, buf.in[:n])
		if rerr != nil && rerr != io.EOF {
			return &bodyReadError{rerr}
		}
		keep := s.heldBack()
		if rerr == io.EOF {
			out = append(out[:len(out)-keep], end...)
			keep = 0
		}
		if len(out)-keep >= bodyChunk || rerr == io.EOF && len(out) > 0 {
			if _, err := w.Write(out[:len(out)-keep]); err != nil {
				return err
			}
			out = append(out[:0], out[len(out)-keep:]...)
		}
		if rerr == io.EOF {
			return nil
		}
	}
}

// bodyReadError is a failure to read the message, told apart from a
// failure to write to the relay.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return fmt.Sprintf("reading the message: %v", e.err) }
func (e *bodyReadError) Unwrap() error { return e.err }
