package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/smtpcmd"
)

// When the relay offers PIPELINING (RFC 2920) and speaks SMTP, a
// transaction goes out in two writes instead of five round trips: MAIL,
// every RCPT and DATA together, then, after the replies, the body and the
// final dot together. go-smtp's client has no pipelining, so transport
// writes these itself, on the connection below go-smtp's (so the
// transcript, the conversation log and the deadlines see them as before),
// and reads the replies with its own reader. The command lines are go-smtp's
// own, byte for byte: a second go-smtp client, which talks to a script
// that has the relay's EHLO reply (smtpcmd), formats them, with the same
// checks and the same errors. Each reply is judged as the
// unpipelined transaction judges it, and a refused MAIL or DATA is
// followed by RSET on a session kept for the next message, as before.
// LMTP stays unpipelined: go-smtp's reading of its replies after the dot
// needs go-smtp to have sent the RCPTs.

// maxReplyLineRead bounds a reply line as go-smtp's client does (RFC 5321
// §4.5.3.1.6, doubled).
const maxReplyLineRead = 2000

// pipelines reports whether the transaction on c can be pipelined.
func (t *Transport) pipelines(c *conn) bool {
	if t.opts.LMTP || c.cc.hellos["EHLO"] == nil {
		return false
	}
	ok, _ := c.client.Extension("PIPELINING")
	return ok
}

// transactPipelined is transact's MAIL, RCPT, DATA, body and dot for a
// relay that offers PIPELINING.
func (t *Transport) transactPipelined(c *conn, tx *transaction) (bool, error) {
	m := tx.msg
	cmds, err := c.commands(t.localName)
	if err != nil {
		return false, &Error{Stage: StageMail, Err: err}
	}
	line, err := cmds.Mail(m.From, mailOptions(m))
	if err != nil {
		return false, &Error{Stage: StageMail, Err: err}
	}
	batch := append(c.batch[:0], line...)
	if i := bytes.Index(batch, body8BitMIME); i >= 0 && !m.EightBit {
		// As clientConn does for go-smtp's MAIL (without8BitMIME).
		batch = append(batch[:i], batch[i+len(body8BitMIME):]...)
	}
	for _, i := range tx.rcpts {
		line, err := cmds.Rcpt(m.Recipients[i], rcptOptions(m, i))
		if err != nil {
			return false, &Error{Stage: StageRcpt, Err: err}
		}
		batch = append(batch, line...)
	}
	if t.chunks(c, m) { // chunking.go
		buf := bodyBuffers.Get().(*bodyBuffer)
		defer bodyBuffers.Put(buf)
		raw, body, ok, err := readChunk(m, buf)
		if err != nil {
			return false, &Error{Stage: StageData, Err: err}
		}
		if ok {
			return t.transactChunk(c, tx, batch, raw, body)
		}
	}
	batch = append(batch, "DATA\r\n"...)
	c.batch = batch

	r := c.replyReader()
	c.cc.SetDeadline(time.Now().Add(t.opts.CommandTimeout))
	defer c.cc.SetDeadline(time.Time{})
	if _, err := c.cc.Conn.Write(batch); err != nil {
		return false, &Error{Stage: StageMail, Err: err}
	}
	// The replies, in order: MAIL, each RCPT, DATA. A refused MAIL is
	// followed by refusals (503) of the rest, which are read and dropped.
	mailErr := readReply(r, 250)
	var se *smtp.SMTPError
	if mailErr != nil && (!errors.As(mailErr, &se) || se.Code == 421) {
		return false, &Error{Stage: StageMail, Err: mailErr}
	}
	var accepted []int
	for _, i := range tx.rcpts {
		err := readReply(r, 25)
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case errors.As(err, &se) && se.Code != 421:
			if mailErr == nil {
				tx.res.Recipients[i].Err = se
			}
		case mailErr != nil:
			return false, &Error{Stage: StageMail, Err: mailErr}
		default:
			return false, &Error{Stage: StageRcpt, Err: err}
		}
	}
	dataErr := readReply(r, 354)
	inStep := dataErr == nil || errors.As(dataErr, &se) // not an I/O error
	if mailErr != nil || len(accepted) == 0 {
		// Nothing to send. A relay that said 354 all the same gets an
		// empty message, ended at once (RFC 2920 §3.1), and its reply
		// is read and dropped.
		if dataErr == nil {
			inStep = t.endEmptyData(c, r)
		}
		switch {
		case mailErr == nil:
			return inStep && c.client.Reset() == nil && r.R.Buffered() == 0, nil
		case !inStep:
			return false, &Error{Stage: StageMail, Err: mailErr}
		}
		return t.refused(c, &Error{Stage: StageMail, Err: mailErr})
	}
	if !inStep {
		return false, &Error{Stage: StageData, Err: dataErr}
	}
	if dataErr != nil {
		return t.refused(c, &Error{Stage: StageData, Err: dataErr})
	}
	c.io.setWriteTimeout(t.opts.DataTimeout)
	defer c.io.setWriteTimeout(t.opts.CommandTimeout)
	body := m.Body
	if body == nil {
		body = bytes.NewReader(nil)
	}
	if err := writeBody(c.cc.Conn, body, dotEnd); err != nil {
		return false, &Error{Stage: StageData, Err: err}
	}
	c.cc.SetDeadline(time.Now().Add(t.opts.DataTimeout))
	_, msg, err := readResponse(r, 250)
	if err != nil {
		return false, t.dotError(c, err)
	}
	for _, i := range accepted {
		tx.res.Recipients[i].Reply = msg
	}
	// The relay sent nothing more than its replies: anything else would
	// be read by go-smtp as the reply to its next command.
	return r.R.Buffered() == 0, nil
}

var body8BitMIME = []byte(" BODY=8BITMIME")

// dotEnd ends the body on the wire: the CRLF that writeBody held back,
// then the line ".".
var dotEnd = []byte("\r\n.\r\n")

// endEmptyData ends, with a lone dot, the DATA a relay accepted although it
// had no recipient; it reports whether the session is still in step.
func (t *Transport) endEmptyData(c *conn, r *textproto.Reader) bool {
	if _, err := c.cc.Conn.Write([]byte(".\r\n")); err != nil {
		return false
	}
	var se *smtp.SMTPError
	err := readReply(r, 250)
	return err == nil || errors.As(err, &se)
}

// replyReader is the reader of the replies to transport's own pipelined
// commands on c, made at the first.
func (c *conn) replyReader() *textproto.Reader {
	if c.replies == nil {
		c.replies = textproto.NewReader(bufio.NewReader(&replyLimit{r: c.cc, room: maxReplyLineRead}))
	}
	return c.replies
}

// readReply reads one reply, as go-smtp's client does: a code other than
// expect is an *smtp.SMTPError.
func readReply(r *textproto.Reader, expect int) error {
	_, _, err := readResponse(r, expect)
	return err
}

func readResponse(r *textproto.Reader, expect int) (int, string, error) {
	code, msg, err := r.ReadResponse(expect)
	var pe *textproto.Error
	if errors.As(err, &pe) {
		return code, msg, toSMTPError(pe)
	}
	return code, msg, err
}

// replyLimit fails a read once a line is longer than maxReplyLineRead, as
// go-smtp's client does, so that a relay cannot make a reply line grow
// without end.
type replyLimit struct {
	r    io.Reader
	room int // bytes the current line may still have
}

func (l *replyLimit) Read(b []byte) (int, error) {
	if l.room < 0 {
		return 0, smtp.ErrTooLongLine
	}
	n, err := l.r.Read(b)
	p := b[:n]
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.room -= len(p)
			break
		}
		l.room, p = maxReplyLineRead, p[i+1:]
	}
	if l.room < 0 {
		return 0, smtp.ErrTooLongLine
	}
	return n, err
}

// commands formats c's MAIL and RCPT lines as go-smtp writes them to this
// relay (smtpcmd), made at c's first pipelined transaction.
func (c *conn) commands(localName string) (*smtpcmd.Formatter, error) {
	if c.cmds == nil {
		f, err := smtpcmd.New(localName, c.cc.hellos["EHLO"])
		if err != nil {
			return nil, err
		}
		c.cmds = f
	}
	return c.cmds, nil
}
