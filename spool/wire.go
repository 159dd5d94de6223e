package spool

import (
	"bytes"
	"io"

	"github.com/emersion/go-smtp"
)

// wire is what the intake does to the bytes between a client and go-smtp,
// both ways, for two things go-smtp v0.25.1 gets wrong (v0.26.0 has the same
// data.go and greeting code):
//
//   - DATA. go-smtp's dataReader is net/textproto's DotReader without its
//     UnreadByte: a CR after a CR puts it in the middle of a line, so the LF
//     that follows starts no line. After "CR CR LF", a dot-stuffed line
//     keeps both dots, and "CR CR LF . CR LF" does not end the data (the
//     client waits for its reply until the read timeout). A line ". CR x"
//     loses its CR. wire reads DATA itself, by RFC 5321 §4.5.2 (a line
//     starts at the beginning and after CRLF; a dot there is removed; CRLF .
//     CRLF ends the data), and hands go-smtp the same message in the one
//     form its reader gets right: every line ending CRLF (a bare CR or LF
//     becomes CRLF, as the normaliser would store it anyway), dot-stuffed,
//     ended by ". CRLF". What is queued is then exactly the normalised
//     message the client sent.
//   - The reply to EHLO (and HELO) begins "250-Hello <client's name>", so a
//     client reads "Hello" as our name (RFC 5321 §4.1.1.1: the first line is
//     "250" SP or "-" Domain). wire puts the server's name in front.
//
// The session does not read DATA through go-smtp's reader, which takes the
// re-encoded message a byte at a time, below which go-smtp's line limit
// counts it a byte at a time again (about a tenth of the daemon's CPU
// under the bench load): it calls readData, which decodes DATA from the
// network straight into the session's normalizer, in chunks, and leaves
// go-smtp an empty DATA to read. What the session stores, and every
// reply, are those of the round trip through go-smtp
// (TestReadDataAsGoSMTP). BDAT, and the rest of a DATA the session
// refused part-way, still go through go-smtp's reader.
//
// wire knows that DATA has begun by the 354 go-smtp writes. So that go-smtp
// never holds message bytes in its own buffer before then (a client that
// sends its message without waiting for the 354), wire hands over the
// command stream one line per Read. A DATA refused with 5xx leaves the
// bytes that follow to be read as commands, as before.
//
// go-smtp reads and writes a connection from one goroutine, so wire needs
// no lock.
type wire struct {
	hostname string

	buf   []byte // backing array of raw
	raw   []byte // read from the client, not yet handed on
	out   []byte // DATA re-encoded, out[outPos:] not yet handed on
	pos   int
	err   error // a read error, returned once raw and out are empty
	data  bool  // between the 354 and the end of data
	esmtp bool  // the client said EHLO (not HELO)

	state dataState // where the decoder is in the client's DATA
	cr    bool      // encoder: a CR written in, its line ending not yet out
	mid   bool      // encoder: out is in the middle of a line
	// direct: readData is decoding; out gets the message without
	// dot-stuffing and without the end of data.
	direct bool
	// tooLong: a line of DATA was over the limit; every read fails with
	// smtp.ErrTooLongLine from then on, as go-smtp's line limit does, so
	// that the connection ends after the reply.
	tooLong bool
}

// dataState is where the reading of DATA is, by RFC 5321.
type dataState uint8

const (
	atLineStart dataState = iota
	afterDot              // "." at a line start
	afterDotCR            // "." CR at a line start
	afterCR               // CR: perhaps the end of a line
	inLine
)

// read is conn.Read: next reads from the network.
func (w *wire) read(p []byte, next func([]byte) (int, error)) (int, error) {
	if w.tooLong {
		return 0, smtp.ErrTooLongLine
	}
	for {
		switch {
		case w.pos < len(w.out):
			n := copy(p, w.out[w.pos:])
			w.pos += n
			if w.pos == len(w.out) {
				w.out, w.pos = w.out[:0], 0
			}
			return n, nil
		case len(w.raw) > 0 && w.data:
			w.decode(len(p))
		case len(w.raw) > 0:
			line := w.raw
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				line = line[:i+1]
			}
			n := copy(p, line)
			w.raw = w.raw[n:]
			return n, nil
		case w.err != nil:
			err := w.err
			w.err = nil
			return 0, err
		default:
			if n, err := w.fill(next); n == 0 && err == nil {
				return 0, nil
			}
		}
	}
}

// fill reads once from the network into raw, which is empty.
func (w *wire) fill(next func([]byte) (int, error)) (int, error) {
	if w.buf == nil {
		w.buf = make([]byte, 4096)
	}
	n, err := next(w.buf)
	w.raw, w.err = w.buf[:n], err
	return n, err
}

// dataChunk is how much readData decodes before handing it on.
const dataChunk = 16 << 10

// readData reads the rest of the DATA section, after the 354, from the
// network, and writes the message to dst as go-smtp's reader would have
// handed it over: the dot-stuffing removed, every line ending CRLF, the
// end of data left out. go-smtp then reads an empty DATA (". CRLF").
//
// Lines are limited to maxLine bytes as go-smtp limits them (0: no
// limit): a longer one ends the reading with smtp.ErrTooLongLine, and
// every later read fails the same way, so go-smtp closes the connection
// after the reply. A network error is returned as it is. When dst fails,
// its error is returned at once and go-smtp reads the rest of DATA as
// before readData, re-encoded, to drop it: the session gives back what it
// holds (its memory) before the client has sent the rest.
func (w *wire) readData(dst io.Writer, maxLine int, next func([]byte) (int, error)) error {
	if !w.data {
		return nil // nothing was announced (cannot happen: the session checks)
	}
	w.direct = true
	defer func() { w.direct = false }()
	if len(w.buf) < dataChunk {
		w.buf = make([]byte, dataChunk) // raw keeps the old one while it needs it
	}
	lines := lineLimit{max: maxLine, n: 1, start: true}
	for w.data {
		if len(w.raw) == 0 {
			if w.err != nil {
				err := w.err
				w.err = nil
				return err
			}
			w.fill(next)
			continue
		}
		w.decode(dataChunk)
		if !lines.count(w.out) {
			w.tooLong, w.out, w.raw = true, w.out[:0], nil
			return smtp.ErrTooLongLine
		}
		if _, err := dst.Write(w.out); err != nil {
			w.out = w.out[:0]
			switch {
			case !w.data: // the end of data was in this chunk
				w.out = append(w.out, ".\r\n"...)
			case w.mid:
				// go-smtp's reader starts at a line start: a byte of text
				// keeps it from taking the rest of this line (".", say)
				// for the end of data.
				w.out = append(w.out, 'x')
			}
			return err
		}
		w.out = w.out[:0]
	}
	w.out, w.pos = append(w.out[:0], ".\r\n"...), 0
	return nil
}

// lineLimit counts line lengths in a message as go-smtp's lineLimitReader
// counts them in the dot-stuffed stream it reads: a line's every byte, its
// CR and its stuffed dot, plus one for the LF before it.
type lineLimit struct {
	max   int  // 0: no limit
	n     int  // the current line's count
	start bool // at the start of a line
}

// count counts p (lines ending CRLF); false once a line is over the limit.
func (l *lineLimit) count(p []byte) bool {
	if l.max <= 0 {
		return true
	}
	for len(p) > 0 {
		if l.start && p[0] == '.' {
			l.n++ // the dot go-smtp's reader would have seen stuffed
		}
		l.start = false
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.n += len(p)
			return l.n <= l.max
		}
		if l.n += i; l.n > l.max {
			return false
		}
		l.n, l.start = 1, true
		p = p[i+1:]
	}
	return true
}

// decode moves bytes from raw to out until out holds limit bytes, raw is
// empty, or the end of data is reached.
func (w *wire) decode(limit int) {
	for len(w.raw) > 0 && len(w.out)-w.pos < limit {
		if w.state == inLine && w.mid && !w.cr {
			// The middle of a line: copy up to its end at once.
			i := indexLineEnd(w.raw)
			if i < 0 {
				i = len(w.raw)
			}
			if i > 0 {
				w.out = append(w.out, w.raw[:i]...)
				w.raw = w.raw[i:]
				continue
			}
		}
		c := w.raw[0]
		w.raw = w.raw[1:]
		prev := w.state
		switch w.state {
		case atLineStart:
			if c == '.' {
				w.state = afterDot // the dot is stuffing, or the end
				continue
			}
		case afterDot:
			if c == '\r' {
				w.state = afterDotCR
				continue
			}
		case afterDotCR:
			if c == '\n' {
				w.end()
				return
			}
			w.put('\r') // ". CR x": the CR is text, the dot was stuffing
			prev = afterCR
		}
		w.put(c)
		switch {
		case c == '\r':
			w.state = afterCR
		case c == '\n' && prev == afterCR:
			w.state = atLineStart
		default:
			w.state = inLine // a bare LF starts no line
		}
	}
}

// put writes one byte of the message to out, with CRLF line endings and
// dot-stuffed.
func (w *wire) put(c byte) {
	if w.cr {
		w.cr = false
		w.out = append(w.out, '\r', '\n')
		w.mid = false
		if c == '\n' {
			return
		}
	}
	switch c {
	case '\r':
		w.cr = true
		return
	case '\n':
		w.out = append(w.out, '\r', '\n')
		w.mid = false
		return
	case '.':
		if !w.mid && !w.direct {
			w.out = append(w.out, '.')
		}
	}
	w.out = append(w.out, c)
	w.mid = true
}

// end writes the end of data and goes back to commands.
func (w *wire) end() {
	if w.cr || w.mid { // cannot happen: the end follows a CRLF
		w.out = append(w.out, '\r', '\n')
	}
	if !w.direct {
		w.out = append(w.out, ".\r\n"...)
	}
	w.data, w.cr, w.mid = false, false, false
}

// protocol is how the client greeted, for the Received header: "ESMTP"
// after EHLO, "SMTP" after HELO.
func (w *wire) protocol() string {
	if w.esmtp {
		return "ESMTP"
	}
	return "SMTP"
}

// reply looks at a reply go-smtp is about to write and returns what to
// write instead (usually b itself).
func (w *wire) reply(b []byte) []byte {
	if bytes.HasPrefix(b, []byte("354 ")) {
		w.data, w.state, w.cr, w.mid = true, atLineStart, false, false
		return b
	}
	for i, hello := range []string{"250-Hello ", "250 Hello ", "250 2.0.0 Hello "} {
		if rest, ok := bytes.CutPrefix(b, []byte(hello)); ok {
			w.esmtp = i < 2
			return append([]byte(hello[:4]+w.hostname+" Hello "), rest...)
		}
	}
	return b
}
