package transport

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"
)

// To a relay that offers CHUNKING (RFC 3030) as well as PIPELINING, a
// message of up to maxChunk bytes goes in a single write: MAIL, every RCPT,
// "BDAT <size> LAST" and the message itself. BDAT needs no 354 and no
// dot-stuffing, so the transaction is one write and one read of the
// replies, where DATA needs two of each (pipeline.go). The relay stores
// the same bytes either way: bare LFs become CRLF and a last line without
// its line ending gets one, as the DATA path's stuffer and final dot make
// it (chunkBody; TestChunkedSameAsData).
//
// With the body in the first write, the relay may have the message as soon
// as that write is out: any failure after it, short of a reply that says
// the relay did not take the transaction (a refused MAIL, or a 421 before
// the body's reply), is a possible duplicate (AfterDot), as a failure after
// the final dot is. So that a pooled connection the relay has closed is
// still found out before anything is sent and replaced within the Send
// (send.go), a connection that sat idle for chunkIdle or more carries its
// next message with DATA.
//
// A relay that refused the MAIL, or every RCPT, answers BDAT with an error
// and must drop the chunk (RFC 3030 §2): the connection is not reused then,
// in case a relay took the chunk's bytes for commands.

// maxChunk is the largest message sent as one chunk; larger ones go with
// DATA, in writes of bodyChunk.
const maxChunk = bodyChunk

// chunkIdle is how long a pooled connection may have been idle and still
// carry the body in its first write.
const chunkIdle = time.Second

// chunks reports whether m goes to the relay on c as one BDAT chunk.
func (t *Transport) chunks(c *conn, m *Message) bool {
	if ok, _ := c.client.Extension("CHUNKING"); !ok || m.Size > maxChunk {
		return false
	}
	return !c.reused || time.Since(c.idleSince) < chunkIdle
}

// readChunk reads m's body, when it has at most maxChunk bytes, into buf:
// as it is (raw) and in the form the relay is to store (body, chunkBody);
// ok is false when it is larger, and then m.Body is replaced by a reader
// of the whole body again, which holds on to buf.
func readChunk(m *Message, buf *bodyBuffer) (raw, body []byte, ok bool, err error) {
	in := buf.in[:0]
	for m.Body != nil && len(in) < cap(in) {
		n, err := m.Body.Read(in[len(in):cap(in)])
		in = in[:len(in)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, false, &bodyReadError{err}
		}
		if len(in) == cap(in) {
			var probe [1]byte
			n, err := m.Body.Read(probe[:])
			if n == 0 && err == io.EOF {
				break
			}
			// A body larger than its Size said: it goes with DATA.
			m.Body = io.MultiReader(bytes.NewReader(in), bytes.NewReader(probe[:n]), m.Body)
			return nil, nil, false, nil
		}
	}
	return in, chunkBody(buf.out[:0], in), true, nil
}

// chunkBody appends to dst the message p as the relay stores what the DATA
// path sends for it (writeBody, then the final dot): the stuffer's work
// without the stuffing (a LF not after a CR that ends a line becomes
// CRLF), and the line ending the final dot's CRLF gives the last line.
func chunkBody(dst, p []byte) []byte {
	s := stuffer{plain: true}
	out := s.stuff(dst, p)
	return append(out[:len(out)-s.heldBack()], '\r', '\n')
}

// transactChunk sends the MAIL and RCPT commands in batch, then BDAT and
// body, in one write, and reads the replies (see above). raw is the body
// as read: when the relay has certainly not taken the message, the Send may
// try again on another connection (send.go), and reads it from there.
func (t *Transport) transactChunk(c *conn, tx *transaction, batch, raw, body []byte) (bool, error) {
	batch = append(batch, "BDAT "...)
	batch = strconv.AppendInt(batch, int64(len(body)), 10)
	batch = append(batch, " LAST\r\n"...)
	batch = append(batch, body...)
	c.batch = batch
	notTaken := func(e *Error) (bool, error) {
		tx.msg.Body = bytes.NewReader(bytes.Clone(raw))
		return false, e
	}

	r := c.replyReader()
	timeout := max(t.opts.CommandTimeout, t.opts.DataTimeout)
	c.io.setWriteTimeout(timeout) // the write's deadline (ioConn.Write sets it)
	defer c.io.setWriteTimeout(t.opts.CommandTimeout)
	defer c.cc.SetDeadline(time.Time{})
	if _, err := c.cc.Conn.Write(batch); err != nil {
		// The relay cannot have the whole chunk.
		return notTaken(&Error{Stage: StageMail, Err: err})
	}
	c.cc.SetReadDeadline(time.Now().Add(timeout)) // for the replies, the last after the relay's commit
	var se *smtp.SMTPError
	mailErr := readReply(r, 250)
	switch {
	case mailErr == nil:
	case !errors.As(mailErr, &se):
		return false, &Error{Stage: StageMail, Err: mailErr, AfterDot: true}
	case se.Code == 421:
		return notTaken(&Error{Stage: StageMail, Err: mailErr})
	}
	var accepted []int
	for _, i := range tx.rcpts {
		err := readReply(r, 25)
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case !errors.As(err, &se):
			return false, &Error{Stage: StageRcpt, Err: err, AfterDot: true}
		case se.Code == 421:
			return notTaken(&Error{Stage: StageRcpt, Err: err})
		case mailErr == nil:
			tx.res.Recipients[i].Err = se
		}
	}
	_, msg, err := readResponse(r, 250)
	if mailErr != nil {
		return notTaken(&Error{Stage: StageMail, Err: mailErr})
	}
	if len(accepted) == 0 {
		return false, nil // every recipient has its refusal
	}
	if err != nil {
		return false, t.dotError(c, err)
	}
	for _, i := range accepted {
		tx.res.Recipients[i].Reply = msg
	}
	return r.R.Buffered() == 0, nil
}
