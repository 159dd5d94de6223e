package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
	"relayq/smtpcmd"
)

// submitCommandTimeout bounds each reply from the daemon; the reply to the
// final dot waits for a commit, which is quick on a healthy disk.
const submitCommandTimeout = time.Minute

// Submit hands one message to the daemon over its Unix socket and returns
// the queue ID from the daemon's "250 … queued as ID" ("" if the reply names
// none: the message is queued all the same). It dials when called;
// Connection.Submit takes a connection dialed ahead (Dial).
//
// EHLO goes out with the connection, before the greeting has come
// (helloAhead). The daemon offers PIPELINING (RFC 2920), so MAIL, every
// RCPT and DATA go out in one write, and the body and the final dot in one
// more (pipelined.go); QUIT is sent but its reply is not waited for.
// sendmail runs once per message, and each round trip is paid per message.
//
// Errors:
//   - errors.Is(err, ErrUnreachable): the socket could not be connected to,
//     the daemon is starting (451 4.3.0 at MAIL, starting.go), it closed
//     the connection with a 421 (a connection cap, shutting down), or the
//     connection failed before the end of the message was sent. Nothing
//     was accepted; fall back to the maildrop.
//   - a *smtp.SMTPError (errors.As): the daemon refused, with that reply.
//   - anything else: the connection failed after the message was sent, so
//     the daemon may or may not have queued it (trying again may send it
//     twice, never zero times).
//
// The body must have CRLF line endings (see Prepare). ctx bounds the whole
// exchange.
func Submit(ctx context.Context, socket string, env queue.Envelope, body []byte) (id string, err error) {
	return (&Connection{socket: socket}).Submit(ctx, env, body)
}

// Connection is a connection to the daemon's socket dialed ahead of its
// message, its EHLO written (Dial): the daemon accepts it, greets and
// answers EHLO while sendmail reads and prepares the message, instead of
// after. It holds one of the daemon's connections (max_connections_per_user)
// only for as long as it is fresh: then it is closed, and the message, when
// it comes, goes on a new one.
type Connection struct {
	socket string
	nc     net.Conn    // nil when not dialed, or the dial failed
	hello  net.Conn    // nc, EHLO written ahead (helloAhead)
	stale  *time.Timer // closes nc once it is no longer fresh
}

// Dial connects to the daemon's socket for a message to come, and says EHLO
// (helloAhead). It waits for nothing and fails silently. The connection is
// closed once fresh has passed (a program that writes its message slowly,
// a pipe from a long job, holds none of the daemon's connections while it
// writes, nor meets the daemon's idle_timeout); Submit dials again then, or
// when this dial failed, as it would have without it.
func Dial(socket string, fresh time.Duration) *Connection {
	c := &Connection{socket: socket}
	if nc, err := net.Dial("unix", socket); err == nil {
		c.nc, c.hello = nc, helloAhead(nc)
		c.stale = time.AfterFunc(fresh, func() { nc.Close() })
	}
	return c
}

// Close closes the connection, for a message that is not to be submitted.
func (a *Connection) Close() error {
	if a.nc == nil {
		return nil
	}
	a.stale.Stop()
	return a.nc.Close()
}

// Submit hands one message to the daemon on the connection, or on a new
// one (see Dial); as the package's Submit, with the same errors. The
// connection is closed when it returns.
func (a *Connection) Submit(ctx context.Context, env queue.Envelope, body []byte) (id string, err error) {
	socket := a.socket
	if a.nc != nil && !a.stale.Stop() {
		a.nc = nil // closed, or being closed, as no longer fresh
	}
	if a.nc == nil {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", socket)
		if err != nil {
			return "", fmt.Errorf("spool: submit to %s: %w: %w", socket, ErrUnreachable, err)
		}
		a.nc, a.hello = nc, helloAhead(nc)
	}
	nc := a.nc
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	c := smtp.NewClient(a.hello)
	defer c.Close()
	c.CommandTimeout = submitCommandTimeout
	c.SubmissionTimeout = submitCommandTimeout

	if err := sayHello(c, env); err != nil {
		return "", unreachableUnlessReply(socket, err)
	}
	send := sendInTurn
	if ok, _ := c.Extension("PIPELINING"); ok {
		send = sendPipelined // pipelined.go
	}
	reply, sent, quit, err := send(c, nc, env, body)
	var smtpErr *smtp.SMTPError
	switch {
	case err != nil && !sent:
		return "", unreachableUnlessReply(socket, err)
	case errors.As(err, &smtpErr) && smtpErr.Code == 421:
		// A 421 to the dot: the daemon began shutting down as the message
		// came, and its Data refuses it before reading a byte (session.go):
		// nothing was queued, as with a 421 before the dot.
		return "", unreachableUnlessReply(socket, err)
	case errors.As(err, &smtpErr):
		return "", fmt.Errorf("spool: submit to %s: %w", socket, err)
	case err != nil:
		return "", fmt.Errorf("spool: submit to %s: no reply after the message was sent, it may or may not be queued: %w", socket, err)
	}
	// The 250 to the dot came after the daemon's commit (session.go): the
	// message is queued, whatever happens from here on. QUIT's reply
	// carries nothing more, so it is not waited for: sendmail runs once
	// per message and would be a round trip later; the daemon ends the
	// session at QUIT, or at the close if QUIT never arrives. QUIT went
	// with the dot already, when the body fitted in that write.
	if !quit {
		nc.SetWriteDeadline(time.Now().Add(submitCommandTimeout))
		_, _ = nc.Write([]byte("QUIT\r\n"))
	}
	return queuedID(reply), nil
}

// sendInTurn is the transaction one command at a time, each reply awaited
// before the next command, for a daemon that does not offer PIPELINING.
// sent says whether the whole message went out, the final dot included:
// before that, nothing can have been queued. QUIT is left to Submit (quit
// is false): a daemon that does not pipeline gets it after the 250.
func sendInTurn(c *smtp.Client, _ net.Conn, env queue.Envelope, body []byte) (reply string, sent, quit bool, err error) {
	if err := c.Mail(env.From, clientMailOptions(env, len(body))); err != nil {
		return "", false, false, err
	}
	for i, r := range env.Recipients {
		if err := c.Rcpt(r, clientRcptOptions(env, i)); err != nil {
			return "", false, false, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", false, false, err
	}
	if _, err := w.Write(body); err != nil {
		return "", false, false, err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", true, false, err
	}
	return resp.StatusText, true, false, nil
}

// queuedID is the ID in the daemon's "Ok: queued as ID" ("" if none). A
// plain search rather than a regexp, which sendmail would compile at every
// start.
func queuedID(reply string) string {
	_, after, ok := strings.Cut(reply, "queued as ")
	if f := strings.Fields(after); ok && len(f) > 0 {
		return f[0]
	}
	return ""
}

// helloName is the name Submit's client gives in EHLO.
const helloName = "localhost"

// helloAhead writes the EHLO line Submit's go-smtp client is going to
// write first, as soon as the connection is there, and returns the
// connection that client is to use, on which its own write of that line
// counts as done. The daemon's greeting and its reply to EHLO then come in
// one round trip, not two: the client does not wait for the greeting
// before it speaks. The daemon is relayq's go-smtp server, which writes
// its greeting before it reads anything, and does not hold early input
// against the client; one that turns the connection away (421 over a
// connection cap, caps.go) writes its reply and closes, and the reply is
// read as before, the EHLO left unread: on a Unix socket what the daemon
// wrote stays readable after its close. go-smtp's client still reads the
// greeting first and checks it (220), then the reply to EHLO, and falls
// back to HELO as it would; the line is go-smtp's own (smtpcmd).
func helloAhead(nc net.Conn) net.Conn {
	line, err := smtpcmd.HelloLine(helloName)
	if err != nil {
		return nc // not for "localhost": the client says EHLO itself then
	}
	_, err = nc.Write(line)
	return &aheadConn{Conn: nc, ahead: line, err: err}
}

// aheadConn is a connection on which the line ahead was written already
// (helloAhead): the next write of exactly that line counts as done, with
// the result the early write had.
type aheadConn struct {
	net.Conn
	ahead []byte // nil once the client has written it
	err   error
}

func (a *aheadConn) Write(b []byte) (int, error) {
	if a.ahead == nil {
		return a.Conn.Write(b)
	}
	if !bytes.Equal(b, a.ahead) {
		return 0, fmt.Errorf("spool: the client wrote %q where %q was written ahead", b, a.ahead)
	}
	a.ahead = nil
	if a.err != nil {
		return 0, a.err
	}
	return len(b), nil
}

// sayHello checks the envelope and says EHLO. go-smtp's client only checks
// addresses for CR and LF; they are checked here in full, so nothing can be
// smuggled into a command as an ESMTP parameter.
func sayHello(c *smtp.Client, env queue.Envelope) error {
	if env.From != "" {
		if err := checkAddress(env.From); err != nil {
			return fmt.Errorf("%w: sender %q: %v", ErrBadAddress, env.From, err)
		}
	}
	for _, r := range env.Recipients {
		if err := checkAddress(r); err != nil {
			return fmt.Errorf("%w: recipient %q: %v", ErrBadAddress, r, err)
		}
	}
	if err := c.Hello(helloName); err != nil {
		return err
	}
	if err := checkDSN(env.DSN); err != nil {
		return fmt.Errorf("%w: %v", ErrBadDSN, err)
	}
	for _, d := range env.RecipientDSN {
		if err := checkRecipientDSN(d); err != nil {
			return fmt.Errorf("%w: %v", ErrBadDSN, err)
		}
	}
	return nil
}

// unreachableUnlessReply classifies a failure before the end of the message
// was sent: the daemon's reply is returned as it is; a bad address stays
// ErrBadAddress; anything else (connection closed, timeout) means nothing was
// accepted, so it is ErrUnreachable. ErrBadDSN stays too.
//
// A 421 is ErrUnreachable as well: the daemon closes the connection with
// it, having accepted nothing, when it turns a connection away (a
// connection cap, the descriptors it keeps in reserve: caps.go) or shuts
// down. It says nothing about the message, which the maildrop then keeps
// for the daemon to import (with the submitter's [limits] applied there),
// instead of sendmail failing with exit 75 and a cron job's mail being
// dropped while another user floods the socket.
func unreachableUnlessReply(socket string, err error) error {
	var smtpErr *smtp.SMTPError
	isReply := errors.As(err, &smtpErr)
	if isStarting(err) || isReply && smtpErr.Code == 421 { // starting.go; caps.go
		return fmt.Errorf("spool: submit to %s: %w: %w", socket, ErrUnreachable, err)
	}
	if isReply || errors.Is(err, ErrBadAddress) || errors.Is(err, ErrBadDSN) {
		return fmt.Errorf("spool: submit to %s: %w", socket, err)
	}
	return fmt.Errorf("spool: submit to %s: %w: %w", socket, ErrUnreachable, err)
}
