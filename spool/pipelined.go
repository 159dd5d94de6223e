package spool

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
	"relayq/smtpcmd"
)

// bodyWriteSize is the largest write of the body to the daemon's socket.
const bodyWriteSize = 32 << 10

// sendPipelined is the transaction for a daemon that offers PIPELINING
// (RFC 2920): MAIL, every RCPT and DATA in one write; then, once DATA has
// its 354, the body and the final dot; then the reply to the dot, which
// comes after the commit. go-smtp's client does not pipeline, so the
// commands are written here, on the connection below it, and the replies
// read with a reader of their own; the command lines are go-smtp's, byte
// for byte (commandLines).
//
// Nothing of the body is sent before DATA's 354, as the RFC wants: after a
// refused MAIL or RCPT the daemon may still answer DATA with 354 (some
// recipients were taken), and then the connection is closed without the
// dot, which leaves nothing queued (the daemon commits only at the dot).
// sent says whether the whole message went out, the dot included.
//
// QUIT goes with the dot, in the same write, when the body fits in one
// (bodyWriteSize; quit says it went): RFC 2920 lets the message content
// begin a group of commands and QUIT end one. The daemon then has QUIT
// when it answers the dot, and answers both at once (replies.go) and
// closes, rather than wake once more for a QUIT sent after the 250 and
// write a 221 that finds sendmail gone (EPIPE, SIGPIPE): work it did while
// sendmail exited and the next one started. The reply to the dot is read
// as before; the 221 is not waited for.
func sendPipelined(c *smtp.Client, nc net.Conn, env queue.Envelope, body []byte) (reply string, sent, quit bool, err error) {
	batch, err := commandLines(c, env, len(body))
	if err != nil {
		return "", false, false, err
	}
	nc.SetDeadline(time.Now().Add(submitCommandTimeout))
	if _, err := nc.Write(batch); err != nil {
		return "", false, false, err
	}
	r := newReplyReader(nc)
	if _, err := readReply(r, 250); err != nil { // MAIL
		return "", false, false, err
	}
	for range env.Recipients {
		if _, err := readReply(r, 25); err != nil { // 250 or 251
			return "", false, false, err
		}
	}
	if _, err := readReply(r, 354); err != nil {
		return "", false, false, err
	}
	if quit = len(body) < bodyWriteSize; quit {
		err = writeDotAndQuit(nc, body)
	} else {
		err = writeDot(bufio.NewWriterSize(nc, bodyWriteSize), body)
	}
	if err != nil {
		// The dot is written last (QUIT after it, when it goes too, is
		// not counted: writeDotAndQuit): a write that fails did not pass
		// its last bytes to the socket, so the daemon never saw the end of
		// the data and queued nothing (it closed its end: shutting down,
		// or the connection timed out). Like a failure before the dot,
		// that is an unreachable daemon, and the maildrop keeps the
		// message.
		return "", false, false, err
	}
	nc.SetDeadline(time.Now().Add(submitCommandTimeout))
	reply, err = readReply(r, 250)
	return reply, true, quit, err
}

// writeDot writes body dot-stuffed (textproto), and the final dot, to w,
// and flushes it.
func writeDot(w *bufio.Writer, body []byte) error {
	dw := textproto.NewWriter(w).DotWriter()
	if _, err := dw.Write(body); err != nil {
		return err
	}
	return dw.Close() // writes the dot and flushes
}

// writeDotAndQuit writes body as writeDot does, then QUIT, in one write.
// A write that fails once the dot has gone is no failure: only QUIT was
// lost, and the reply to the dot is still to be read.
func writeDotAndQuit(nc net.Conn, body []byte) error {
	var b bytes.Buffer
	b.Grow(len(body) + len(body)/64 + len(".\r\nQUIT\r\n"))
	if err := writeDot(bufio.NewWriterSize(&b, min(len(body)+5, bodyWriteSize)), body); err != nil {
		return err
	}
	dot := b.Len()
	b.WriteString("QUIT\r\n")
	if n, err := nc.Write(b.Bytes()); err != nil && n < dot {
		return err
	}
	return nil
}

// commandLines returns the MAIL, RCPT and DATA lines of env's transaction
// as go-smtp's client writes them to the server c has greeted (smtpcmd:
// with the same checks and errors; an error here is go-smtp's own, from
// before anything was written).
func commandLines(c *smtp.Client, env queue.Envelope, size int) ([]byte, error) {
	f, err := smtpcmd.New(helloName, smtpcmd.EHLOReply(c))
	if err != nil {
		return nil, err
	}
	line, err := f.Mail(env.From, clientMailOptions(env, size))
	if err != nil {
		return nil, err
	}
	batch := append([]byte(nil), line...)
	for i, r := range env.Recipients {
		line, err := f.Rcpt(r, clientRcptOptions(env, i))
		if err != nil {
			return nil, err
		}
		batch = append(batch, line...)
	}
	return append(batch, "DATA\r\n"...), nil
}

// readReply reads one reply as go-smtp's client does: a code other than
// expect (a single digit matches a class, as textproto reads it) is an
// *smtp.SMTPError, its enhanced code parsed.
func readReply(r *textproto.Reader, expect int) (string, error) {
	_, msg, err := r.ReadResponse(expect)
	var pe *textproto.Error
	if errors.As(err, &pe) {
		return msg, replyError(pe)
	}
	return msg, err
}

// newReplyReader reads the daemon's replies from nc, as go-smtp's client
// would (its reader has nothing buffered between a reply and the next
// command: the daemon sends nothing unasked).
func newReplyReader(nc net.Conn) *textproto.Reader {
	return textproto.NewReader(bufio.NewReader(nc))
}

// replyError is the *smtp.SMTPError go-smtp's client makes of a reply it
// did not expect: the enhanced code, when the text begins with one, taken
// out of the text (of every line, RFC 2034).
func replyError(pe *textproto.Error) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: pe.Code, Message: pe.Msg}
	first, rest, ok := strings.Cut(pe.Msg, " ")
	if !ok {
		return se
	}
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return se
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return se
		}
		ec[i] = n
	}
	se.EnhancedCode = ec
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}
