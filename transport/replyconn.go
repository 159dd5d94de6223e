package transport

import (
	"bytes"
	"fmt"
	"net"
)

// replyConn is the relay connection as the reply readers see it: net/textproto,
// which reads every reply (transport's own before go-smtp takes over, in
// dial.go, and go-smtp's), runs on it. It mends the two points where
// textproto and RFC 5321 §4.2 disagree, and changes nothing else:
//
//   - A reply line may be its code alone (reply-line = reply-code
//     [ SP textstring ] CRLF): "250\r\n". textproto refuses it ("short
//     response"), so a bare 250 to the final dot left the outcome unknown
//     (the message was sent again: a certain duplicate) and a bare reply
//     anywhere else failed the session. replyConn inserts the space,
//     "250 \r\n", which textproto reads as code 250 with no text.
//   - Every line of a multi-line reply carries the same code, and the
//     reply ends at the first line with a space after it (§4.2.1).
//     textproto, written for FTP too, reads on past any line that does not
//     end the reply its way, until the timeout: "250-ok" then "999 x"
//     kept a worker waiting for DataTimeout. replyConn fails the read at
//     once, at the first line that neither continues nor ends the reply
//     with its code, with a *malformedReplyError, and every read after
//     that: the session is out of step and not used again. After the
//     final dot that is an unknown outcome (AfterDot), like a lost reply.
//
// Only the start of each line is held back, until it says what the line
// is (at most "250\r\n"); the rest of a line passes as it comes. It sits
// above the wire (debug.go), so the transcript and the logs show what the
// relay sent.
type replyConn struct {
	net.Conn
	buf  []byte // scratch for reads from Conn
	out  []byte // ready for the reader
	head []byte // the start of the current line, until decide says what the line is
	mid  bool   // within a line whose start was decided: bytes pass until '\n'
	code string // the code of the multi-line reply being read; "" between replies
	// broken: the start (then the whole, up to maxBrokenLine bytes) of
	// the line that broke a multi-line reply; err is set once that much
	// of it is read (or the read fails).
	broken []byte
	err    error // sticky: the *malformedReplyError
	rerr   error // Conn's error, returned once out is drained
}

// maxBrokenLine bounds what a malformedReplyError quotes of the line.
const maxBrokenLine = 64

func newReplyConn(nc net.Conn) *replyConn { return &replyConn{Conn: nc} }

func (c *replyConn) Read(b []byte) (int, error) {
	for len(c.out) == 0 && c.err == nil && c.rerr == nil {
		c.fill()
	}
	if len(c.out) > 0 {
		n := copy(b, c.out)
		if n == len(c.out) {
			c.out = c.out[:0] // drained: the next appends reuse the array
		} else {
			c.out = c.out[n:]
		}
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	err := c.rerr
	c.rerr = nil
	return 0, err
}

// buffered is how many bytes the relay sent that were read from Conn but
// not yet handed out.
func (c *replyConn) buffered() int { return len(c.out) + len(c.head) + len(c.broken) }

// fill reads once from Conn.
func (c *replyConn) fill() {
	if c.buf == nil {
		c.buf = make([]byte, 4096)
	}
	n, err := c.Conn.Read(c.buf)
	c.scan(c.buf[:n])
	if err == nil {
		return
	}
	if c.broken != nil && c.err == nil {
		c.fail()
	}
	if len(c.head) > 0 { // a line cut short by the error: as it came
		c.out = append(c.out, c.head...)
		c.head, c.mid = c.head[:0], true
	}
	c.rerr = err
}

// scan takes p, as read from Conn.
func (c *replyConn) scan(p []byte) {
	for len(p) > 0 && c.err == nil {
		switch {
		case c.broken != nil:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				i = len(p)
			}
			c.broken = append(c.broken, p[:min(i, maxBrokenLine-len(c.broken))]...)
			if i < len(p) || len(c.broken) == maxBrokenLine {
				c.fail()
			}
			p = p[i:]
		case c.mid:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				c.out = append(c.out, p...)
				return
			}
			c.out = append(c.out, p[:i+1]...)
			p, c.mid = p[i+1:], false
		default:
			c.head = append(c.head, p[0])
			p = p[1:]
			c.decide()
		}
	}
}

// decide looks at the start of the current line, c.head, and once it says
// what the line is (a bare code, a line continuing or ending a reply, or
// something else), hands it on, mended, or marks the reply broken.
func (c *replyConn) decide() {
	h := c.head
	n := len(h)
	hasCode := n >= 3 && isCode(h[:3])
	complete := h[n-1] == '\n'
	if !complete && (n < 3 && digits(h) || n == 3 && hasCode || n == 4 && hasCode && h[3] == '\r') {
		return // "2", "25", "250", "250\r": more is needed to know
	}
	bare := hasCode && (n == 4 && complete || n == 5 && bytes.HasSuffix(h, []byte("\r\n")))
	continues := hasCode && n >= 4 && h[3] == '-'
	ends := bare || hasCode && n >= 4 && h[3] == ' '
	if c.code != "" && (!continues && !ends || string(h[:3]) != c.code) {
		c.broken = append([]byte(nil), h...)
		c.head = c.head[:0]
		if complete {
			c.fail()
		}
		return
	}
	c.code = ""
	if continues {
		c.code = string(h[:3])
	}
	if bare {
		c.out = append(append(c.out, h[:3]...), ' ')
		c.out = append(c.out, h[3:]...)
	} else {
		c.out = append(c.out, h...)
	}
	c.head, c.mid = c.head[:0], !complete
}

// fail ends the reading: c.broken broke the reply.
func (c *replyConn) fail() {
	c.err = &malformedReplyError{code: c.code, line: string(bytes.TrimRight(c.broken, "\r\n"))}
}

// digits reports whether b is all digits.
func digits(b []byte) bool {
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return false
		}
	}
	return true
}

// isCode reports whether b (3 bytes) is a reply code as textproto reads
// one: three digits, 100 or more.
func isCode(b []byte) bool {
	return b[0] >= '1' && b[0] <= '9' && b[1] >= '0' && b[1] <= '9' && b[2] >= '0' && b[2] <= '9'
}

// malformedReplyError is a multi-line reply broken by a line that neither
// continues nor ends it with its code.
type malformedReplyError struct {
	code string // the reply's code, from its first line
	line string // the line that broke it, cut to maxBrokenLine bytes
}

func (e *malformedReplyError) Error() string {
	return fmt.Sprintf("malformed reply from the relay: the reply with code %s went on with the line %q, "+
		"which neither continues nor ends it (RFC 5321 §4.2.1)", e.code, e.line)
}
