package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// StandaloneOptions configures ServeStandalone.
type StandaloneOptions struct {
	// Maildrop is the directory each message is written to (WriteMaildrop).
	Maildrop string
	// Hostname is the name in the greeting and the reply to EHLO.
	Hostname string
	// MaxMessageSize and MaxRecipients are as in Options; 0 means no limit.
	MaxMessageSize int64
	MaxRecipients  int
	// QueuePath and MinFree are the daemon's queue file and [queue]
	// min_free: below it a MAIL FROM gets 452 4.3.1, as intake and
	// sendmail refuse then (MaildropRoom).
	QueuePath string
	MinFree   int64
	// Log receives go-smtp's messages and the causes of refusals; nil
	// means slog.Default().
	Log *slog.Logger
}

// ServeStandalone answers one SMTP session on r and w without the daemon:
// sendmail -bs while relayq is not running. Each message accepted is written
// to the maildrop, and 250 comes only once the file is on disk; the daemon
// queues it when it starts, as it does sendmail's. A maildrop this user may
// not write to gets 550 5.7.1 at the end of DATA, any other failure 451.
// The input is read as the daemon reads it (wire.go, normalizer). It returns
// when the session ends (QUIT, or the end of r).
func ServeStandalone(r io.Reader, w io.Writer, o StandaloneOptions) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &dropSession{o: o}, nil
	}))
	srv.Domain = o.Hostname
	srv.MaxMessageBytes = o.MaxMessageSize
	srv.MaxRecipients = o.MaxRecipients
	srv.MaxLineLength = defaultMaxLineLength
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true // kept with the message in the maildrop, as the daemon keeps them
	srv.ErrorLog = errorLog{o.Log}
	c := &stdioConn{r: r, w: w, wire: wire{hostname: o.Hostname}, closed: make(chan struct{})}
	err := srv.Serve(&oneConnListener{conn: c})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// dropSession is one transaction of ServeStandalone.
type dropSession struct {
	o       StandaloneOptions
	env     queue.Envelope
	rcptDSN []queue.RecipientDSN // parallel to env.Recipients
	utf8    bool
	seen    map[string]bool
}

var replyNoPermission = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "This user may not submit mail (see relayq's socket_group)"}

func (s *dropSession) Reset()        { s.env, s.rcptDSN, s.utf8, s.seen = queue.Envelope{}, nil, false, nil }
func (s *dropSession) Logout() error { return nil }

func (s *dropSession) Mail(from string, opts *smtp.MailOptions) error {
	if from != "" && checkAddress(from) != nil {
		return replyBadSender
	}
	if err := MaildropRoom(s.o.QueuePath, s.o.Maildrop, s.o.MinFree); err != nil {
		s.o.Log.Warn("maildrop refused: not enough free space", "err", err)
		return replyFull
	}
	dsn, err := mailDSN(opts)
	if err != nil {
		return err
	}
	s.env.From, s.env.DSN, s.utf8 = from, dsn, opts != nil && opts.UTF8
	return nil
}

func (s *dropSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if checkAddress(to) != nil {
		return replyBadRcpt
	}
	dsn, err := rcptDSN(opts)
	if err != nil {
		return err
	}
	if s.seen == nil {
		s.seen = make(map[string]bool)
	}
	if k := addressKey(to); !s.seen[k] {
		s.seen[k] = true
		s.env.Recipients = append(s.env.Recipients, to)
		s.rcptDSN = append(s.rcptDSN, dsn)
	}
	return nil
}

func (s *dropSession) Data(r io.Reader) error {
	n, body, err := readNormalized(r, s.o.MaxMessageSize)
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge), errors.Is(err, errTooLarge):
		return smtp.ErrDataTooLarge
	case err != nil:
		return replyTimeout
	case n.nul:
		return replyNUL
	}
	env := s.env
	if slices.ContainsFunc(s.rcptDSN, func(d queue.RecipientDSN) bool { return !d.IsZero() }) {
		env.RecipientDSN = s.rcptDSN
	}
	env.UTF8 = messageNeedsUTF8(s.utf8, env.From, env.Recipients, body)
	env.EightBit = n.eightBit
	name, err := WriteMaildrop(s.o.Maildrop, env, body)
	switch {
	case errors.Is(err, fs.ErrPermission):
		s.o.Log.Error("cannot write to the maildrop", "err", err)
		return replyNoPermission
	case err != nil:
		s.o.Log.Error("cannot write to the maildrop", "err", err)
		return replyStorage
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message: "Ok: queued in the maildrop as " + name + " (relayq is not running; it takes the message when it starts)"}
}

// stdioConn is standard input and output as the one connection go-smtp
// serves, read and written through a wire as the daemon's are. Once
// closed (QUIT, or go-smtp giving up on a client after too many errors) it
// reads io.EOF and writes nothing more, so that nothing is written after
// ServeStandalone has returned.
type stdioConn struct {
	r    io.Reader
	w    io.Writer
	wire wire

	mu     sync.Mutex // held by Write and Close
	closed chan struct{}
}

func (c *stdioConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *stdioConn) Read(p []byte) (int, error) {
	if c.isClosed() {
		return 0, io.EOF
	}
	return c.wire.read(p, c.r.Read)
}

func (c *stdioConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	if _, err := c.w.Write(c.wire.reply(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *stdioConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isClosed() {
		close(c.closed)
	}
	return nil
}

func (c *stdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdin" }

// oneConnListener hands out its connection once; the next Accept waits
// for it to close and then reports the listener closed, which ends Serve.
type oneConnListener struct {
	conn   *stdioConn
	handed bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.handed {
		l.handed = true
		return l.conn, nil
	}
	<-l.conn.closed
	return nil, fmt.Errorf("spool: standalone session ended: %w", net.ErrClosed)
}

func (l *oneConnListener) Close() error   { return l.conn.Close() }
func (l *oneConnListener) Addr() net.Addr { return stdioAddr{} }
