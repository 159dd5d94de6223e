package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// Replies. go-smtp answers with the code of an error only if the error IS a
// *smtp.SMTPError (a type assertion, so not even a wrapped one): anything
// else from Data becomes a permanent 554 (reliability.md §4.2). Every
// Session method below therefore returns one of these, bare, and logs the
// cause itself. None of them carries a path or internal error text.
var (
	replyBadSender = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	replyBadRcpt   = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	replyNested    = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command"}
	replyNUL       = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message contains NUL octets"}
	replyFull      = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	replyStorage   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	replyTimeout   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout or connection lost while reading message data"}
	replyShutdown  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down, try again later"}
)

// replyLineTooLong is the reply to a DATA line over Options.MaxLineLength.
func replyLineTooLong(limit int) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Message has a line longer than %d bytes", limit)}
}

// replyQueued is how Data says 250 with the queue ID in the text: go-smtp
// writes an SMTPError's code and text as they are, whatever the class.
func replyQueued(id string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// session is one SMTP connection's transaction state.
type session struct {
	srv       *Server
	conn      *conn
	smtp      *smtp.Conn // for the client's HELO name
	submitter queue.Submitter
	log       *slog.Logger
	probe     bool // Starting's session: answered "starting" until Ready (starting.go)

	fromSet bool
	from    string
	utf8    bool
	dsn     queue.DSN
	rcpts   []string
	rcptDSN []queue.RecipientDSN // parallel to rcpts
	seen    map[string]bool
}

// newSession is go-smtp's Backend: called at the first EHLO/HELO.
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	sc, ok := c.Conn().(*conn)
	if !ok {
		// Every connection comes through listener.Accept.
		return nil, replyStorage
	}
	sub := queue.Submitter{UID: -1, Via: sc.via}
	log := s.log.With("via", sc.via)
	switch sc.via {
	case viaSocket:
		uid, pid := sc.uid, sc.pid // read at Accept (caps.go)
		if sc.credErr != nil {
			log.Warn("submitter unknown", "err", sc.credErr)
		}
		sub.UID, sub.User, sub.Unit = uid, userName(uid), unitOf(pid)
		log = log.With("uid", uid)
		if sub.Unit != "" {
			log = log.With("unit", sub.Unit)
		}
	case viaTCP:
		// The owner of the client's socket, read at Accept (caps.go):
		// [limits] count it as that uid's, as on the socket. No pid: the
		// systemd unit, and [limits] unit rules, are the socket's only.
		sub.Addr = sc.RemoteAddr().String()
		log = log.With("addr", sub.Addr)
		if sc.uid >= 0 {
			sub.UID, sub.User = sc.uid, userName(sc.uid)
			log = log.With("uid", sc.uid)
		}
	}
	return &session{srv: s, conn: sc, smtp: c, submitter: sub, log: log.With("helo", c.Hostname()), probe: c.Hostname() == startingProbeName}, nil
}

func (s *session) Reset() {
	s.conn.inTxn.Store(false)
	s.fromSet, s.from, s.utf8, s.dsn = false, "", false, queue.DSN{}
	s.rcpts, s.rcptDSN = nil, nil
	if len(s.seen) > maxKeptSeen {
		s.seen = nil // not kept at the size of a large transaction
	}
	clear(s.seen) // kept for the session's next transaction
}

func (s *session) Logout() error { return nil }

// maxKeptSeen is the most recipients whose map a session keeps (emptied)
// for its next transaction, instead of making a new one.
const maxKeptSeen = 64

// Mail takes the reverse path; "" is the null sender <>. go-smtp has checked
// the syntax of the path already; this checks what it lets through (control
// characters, quoted local parts, lengths).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.fromSet {
		return replyNested
	}
	starting := s.srv.starting() // starting.go: the message goes to the maildrop
	if starting && (s.srv.opts.Maildrop == "" || s.probe) {
		return replyStarting
	}
	if from != "" {
		if err := checkAddress(from); err != nil {
			s.log.Info("refused sender", "from", fmt.Sprintf("%q", from), "err", err)
			return s.reject(reasonBadAddress, replyBadSender)
		}
	}
	dsn, err := mailDSN(opts)
	if err != nil {
		s.log.Info("refused DSN parameters", "from", from, "err", err)
		return s.reject(reasonBadDSN, err)
	}
	var size int64
	if opts != nil {
		size = opts.Size
	}
	if err := s.srv.room(starting); err != nil {
		// queue.Put (or, while starting, the maildrop) would refuse it
		// (min_free): say so before the body.
		s.log.Warn("queue full, message refused", "from", from, "size", size, "err", err)
		return s.reject(reasonQueueFull, replyFull)
	}
	if s.srv.mem.neverFits(size) {
		s.log.Info("refused message larger than the memory budget allows", "from", from, "size", size)
		return s.reject(reasonMemory, smtp.ErrDataTooLarge)
	}
	// [limits] count what the queue holds: while starting they are
	// applied at the maildrop's import (starting.go).
	if !starting {
		if r := s.srv.limits.Load().check(s.submitter, size); r != nil {
			return s.reject(reasonLimits, r)
		}
	}
	s.fromSet, s.from, s.dsn = true, from, dsn
	s.utf8 = opts != nil && opts.UTF8
	s.conn.inTxn.Store(true) // commands may take ReadTimeout now (conn.go)
	return nil
}

// Rcpt adds a recipient, or the addresses Options.Rewriting maps it to
// (aliases: refused with 550 5.1.1 when it maps to nothing). The same
// address given twice is kept once (the
// domain compared without case), so the relay never sees it twice in one
// transaction. go-smtp refuses <postmaster> without a domain (its parser
// wants local@domain) before this is called, with 501 5.5.2.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := checkAddress(to); err != nil {
		s.log.Info("refused recipient", "rcpt", fmt.Sprintf("%q", to), "err", err)
		return s.reject(reasonBadAddress, replyBadRcpt)
	}
	dsn, err := rcptDSN(opts)
	if err != nil {
		s.log.Info("refused DSN parameters", "rcpt", to, "err", err)
		return s.reject(reasonBadDSN, err)
	}
	addrs, reply, err := s.srv.rewriting.Load().recipient(to)
	if err != nil {
		s.log.Info("refused recipient", "rcpt", to, "err", err)
		if reply == replyUnknownRcpt {
			return s.reject(reasonUnknownRecipient, reply)
		}
		return s.reject(reasonBadAddress, reply)
	}
	if s.seen == nil {
		s.seen = make(map[string]bool)
	}
	for _, a := range addrs {
		if k := addressKey(a); !s.seen[k] {
			s.seen[k] = true
			s.rcpts = append(s.rcpts, a)
			s.rcptDSN = append(s.rcptDSN, dsn) // a repeated address keeps its first NOTIFY/ORCPT
		}
	}
	return nil
}

// Data reads the message, normalising its line endings, adds Received and
// any missing Date and Message-ID (stampMessage), and answers 250 only once
// queue.Put has returned (the bbolt commit is on disk). While the queue is
// not open, the message goes into the maildrop instead, and the 250 comes
// once that file is on disk (keepForLater, starting.go).
func (s *session) Data(r io.Reader) error {
	if !s.srv.beginData(s.conn) {
		return s.reject(reasonShutdown, replyShutdown)
	}
	defer s.srv.endData(s.conn)
	// The client has every reply before Data may wait (replies.go).
	s.conn.replies.beginTaking(s.conn.Conn)
	defer s.conn.replies.endTaking()

	mem := s.srv.mem.hold(s.conn.key) // memory.go
	defer mem.release()
	var n *normalizer
	var body []byte
	var err error
	if s.conn.wire.data { // DATA, not BDAT: read from the network directly
		n, body, err = readData(s.conn, s.srv.opts.MaxMessageSize, s.srv.opts.MaxLineLength, mem)
	} else {
		n, body, err = readReserved(r, s.srv.opts.MaxMessageSize, mem)
	}
	if err != nil {
		n.release()
		return s.readFailed(err)
	}
	if n.nul {
		n.release()
		s.log.Info("refused message with NUL octets", "from", s.from, "size", len(body))
		return s.reject(reasonNUL, replyNUL)
	}
	q := s.srv.queue()
	if q == nil { // starting.go
		defer n.release()
		return s.keepForLater(body)
	}
	id := q.NewID()
	stamped := stampMessage(takeBodyBuffer(), body, stamp{
		id: id, hostname: s.srv.opts.Hostname, helo: s.smtp.Hostname(), with: s.conn.wire.protocol(),
		submitter: s.submitter, now: time.Now(),
	})
	n.release() // stampMessage copied the body
	// Put keeps nothing of the body once it returns, nor does Message: the
	// stamped buffer goes back to the pool for the next message.
	defer giveBodyBuffer(stamped)
	body = stamped
	from := s.from
	if f := s.srv.rewriting.Load().Message; f != nil {
		from, body = f(from, body)
	}
	env := queue.Envelope{
		ID:         id,
		From:       from,
		Recipients: s.rcpts,
		Submitter:  s.submitter,
		UTF8:       messageNeedsUTF8(s.utf8, from, s.rcpts, body),
		EightBit:   n.eightBit,
		DSN:        s.dsn,
	}
	if slices.ContainsFunc(s.rcptDSN, func(d queue.RecipientDSN) bool { return !d.IsZero() }) {
		env.RecipientDSN = s.rcptDSN
	}
	counted, refused := s.srv.limits.Load().admit(s.submitter, int64(len(body)))
	if refused != nil {
		return s.reject(reasonLimits, refused)
	}
	id, err = q.Put(s.srv.putCtx, env, body)
	counted(err == nil)
	switch {
	case errors.Is(err, queue.ErrFull):
		s.log.Error("queue full, message refused", "from", s.from, "size", len(body), "err", err)
		return s.reject(reasonQueueFull, replyFull)
	case err != nil:
		s.log.Error("cannot queue message", "from", s.from, "size", len(body), "err", err)
		return s.reject(reasonStorage, replyStorage)
	}
	s.srv.opts.Metrics.accept(s.submitter.Via) // metrics.go
	s.logAccepted(id, len(body))
	return replyQueued(id)
}

// logAccepted logs a queued message, as s.log.LogAttrs would, but with no
// source position: slog's Logger takes one from runtime.Callers for every
// record (a stack walk, a sixth of the line's cost under bench/run.sh), and
// relayq's handlers never print it.
func (s *session) logAccepted(id string, size int) {
	ctx, h := context.Background(), s.log.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "accepted", 0)
	r.AddAttrs(slog.String("id", id), slog.String("from", s.from), slog.Int("rcpts", len(s.rcpts)), slog.Int("size", size))
	h.Handle(ctx, r)
}

// readFailed maps a failure to read the DATA section to a reply.
func (s *session) readFailed(err error) error {
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge), errors.Is(err, errTooLarge):
		s.log.Info("refused message over the size limit", "from", s.from, "limit", s.srv.opts.MaxMessageSize)
		return s.reject(reasonSize, smtp.ErrDataTooLarge)
	case errors.Is(err, errNoMemory):
		s.srv.logNoMemory(s.log, s.conn.key)
		return s.reject(reasonMemory, replyFull)
	case errors.Is(err, errOverShare):
		s.log.Info("refused message larger than the memory budget allows", "from", s.from)
		return s.reject(reasonMemory, smtp.ErrDataTooLarge)
	case errors.Is(err, smtp.ErrTooLongLine):
		s.log.Info("refused message with a line too long", "from", s.from, "limit", s.srv.opts.MaxLineLength)
		return s.reject(reasonLineTooLong, replyLineTooLong(s.srv.opts.MaxLineLength))
	default:
		// A timeout (the connection is then closed, see conn), or the
		// client went away. Nothing was queued.
		s.log.Info("message data not received", "from", s.from, "err", err)
		return s.reject(reasonIncomplete, replyTimeout)
	}
}

// reject counts a refusal (metrics.go) and returns reply.
func (s *session) reject(r reason, reply error) error {
	return s.srv.opts.Metrics.reject(r, reply)
}
