package spool

import (
	"context"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// While the daemon starts, intake listens before the queue is open: a
// large queue file takes seconds to open and check (after a crash with a
// million messages queued, 1.7 s warm and 3.4 s with the page cache
// empty: the walk that turns a damaged file into exit 65 reads all of
// it), and a client refused at connect (ECONNREFUSED on the loopback
// port, ENOENT on the socket) sees relayq as down. A Server made without
// Options.Queue takes mail durably before Ready all the same, into the
// maildrop (Options.Maildrop):
//
//	220 <hostname> ESMTP Service Ready
//	EHLO/HELO, NOOP, RSET, VRFY, QUIT as usual
//	MAIL, RCPT     checked as always, except [limits] (below)
//	DATA … .       → 250 2.0.0 Ok: queued as <maildrop name> (relayq is starting: …)
//
// At the end of DATA the message is written into the maildrop as
// sendmail's fallback writes it (temporary file, fsync, rename, fsync of
// the directory), with an intake line that records the submitter the
// socket saw (SO_PEERCRED) or the TCP address, the HELO name, the
// protocol and the time (maildrop_intake.go); the 250 comes only once all
// of that is on disk. The daemon's Maildrop import queues the file once the queue is
// open, as it queues sendmail's, with the submitter, Received header and
// rewriting a session with the queue open would have given the message,
// then removes it. A crash before the import loses nothing: the next
// start imports the file; so does a queue that cannot be opened (a
// damaged file: exit 65) — the files wait in the maildrop, as sendmail's
// do, for the start that opens it. The import's one documented window
// applies: a crash after Put and before the file's removal is on disk
// imports it again (a duplicate, never a loss).
//
// What intake checks before the 250 is what it always checks that does
// not need the queue: the sender and recipients' syntax, the DSN
// parameters, aliases and unknown local recipients (550 5.1.1 at RCPT),
// max_recipients, max_message_size, NUL octets, the memory budget, and
// min_free on the queue's file system (MaildropRoom: 452 4.3.1 at MAIL
// and again before the file is written, and nothing is written). The
// recipients written are those RCPT mapped; the sender and header are
// rewritten at import, after the Received stamp, as Data does.
//
// What needs the queue, [limits] (messages_per_hour, queued_bytes per
// submitter), is applied at import, as for sendmail's files
// (maildrop_policy.go), under the submitter of the intake line: a message
// over messages_per_hour or queued_bytes waits in the maildrop, claimed,
// and is tried again with a growing delay (1 s, 2 s, … at most 5
// minutes), without counting as a failure, until its submitter is under
// the limit; one larger than its submitter's whole queued_bytes is set
// aside (*.bad) and logged, as a sendmail file would be. So a submitter
// over its limit while relayq starts gets 250 where it would get 452
// 4.7.0 a few seconds later, and its message waits its turn instead.
//
// Without Options.Maildrop, MAIL gets 451 4.3.0 "relayq is starting; try
// again shortly" until Ready, and nothing gets as far as DATA. Why 451 at
// MAIL rather than a 421 greeting and close: a 4xx to MAIL is the one
// temporary failure every client handles per message. `relayq sendmail`
// (Submit) takes that reply for an unreachable daemon and writes the
// message into the maildrop itself. Starting's probe session (HELO
// startingProbeName) gets that reply in either case, which is how
// `relayq status` tells a starting relayq from a ready one.
//
// Listeners that systemd passed (socket activation, Options.Inherited) are
// served at once when there is a maildrop to take mail into: a connection
// then gets its 250 within milliseconds of the start instead of waiting
// in the socket's backlog for the queue to open (seconds at a million
// messages, longer than many clients' connect timeout). Without a
// maildrop they are held until Ready, as before: a connection waits in
// the backlog and then gets its 250, which beats a 451.

// replyStarting is the answer to MAIL while the queue is not open yet.
var replyStarting = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: startingText}

// startingText is the text of replyStarting, which Submit recognises.
const startingText = "relayq is starting; try again shortly"

// startingProbeName is the HELO name of Starting's session.
const startingProbeName = "relayq-starting-probe.invalid"

// queue is the queue messages go into; nil until Ready.
func (s *Server) queue() *queue.Queue { return s.q.Load() }

// Ready hands the server the open queue: from now on MAIL is accepted.
// It is called once, after Start, by a server made without
// Options.Queue; the queue must stay open until Shutdown has returned.
func (s *Server) Ready(q *queue.Queue) {
	s.limitsMu.Lock()
	defer s.limitsMu.Unlock()
	s.limits.Store(newLimiter(s.limitsSet, q, s.log).carryFrom(s.limits.Load()))
	s.q.Store(q)
	s.log.Info("taking mail: the queue is open")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		for _, l := range s.held {
			s.serveLocked(l)
		}
	}
	s.held = nil
}

// starting reports whether Ready is still to come.
func (s *Server) starting() bool { return s.q.Load() == nil }

// isStarting reports whether err is a running relayq's replyStarting.
func isStarting(err error) bool {
	var e *smtp.SMTPError
	return errors.As(err, &e) && e.Code == replyStarting.Code && e.EnhancedCode == replyStarting.EnhancedCode &&
		e.Message == startingText
}

// Starting reports whether the relayq on the submission socket is
// starting: it greets, and answers the MAIL of a session that says HELO
// startingProbeName with the starting reply (no message is sent). `relayq status` asks it when the control socket,
// which comes once the queue is open, does not answer.
func Starting(ctx context.Context, socket string) bool {
	// A socket systemd holds without a maildrop is served only once relayq
	// is ready: there a connection waits in the backlog instead.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return false
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	c := smtp.NewClient(nc)
	defer c.Close()
	c.CommandTimeout = submitCommandTimeout
	if err := c.Hello(startingProbeName); err != nil {
		return false
	}
	err = c.Mail("", nil)
	_ = c.Quit()
	return isStarting(err)
}

// room says whether a message may come in: queue.Room once the queue is
// open; while starting, MaildropRoom on the queue's file system.
func (s *Server) room(starting bool) error {
	if starting {
		return MaildropRoom(s.opts.QueuePath, s.opts.Maildrop, s.opts.MinFree)
	}
	return s.queue().Room()
}

// replyKept is the 250 for a message written into the maildrop while the
// queue is not open; sendmail's Submit reads the name as the queue ID.
func replyKept(name string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message: "Ok: queued as " + name + " (relayq is starting: in the maildrop until the queue is open)"}
}

// keepForLater is Data while the queue is not open: it writes the
// message read (body, as the client sent it, normalised) into the
// maildrop with the session's intake line, and answers 250 once the file
// and its name are on disk.
func (s *session) keepForLater(body []byte) error {
	if err := s.srv.room(true); err != nil {
		s.log.Warn("queue full, message refused", "from", s.from, "size", len(body), "err", err)
		return s.reject(reasonQueueFull, replyFull)
	}
	env := queue.Envelope{
		From:       s.from,
		Recipients: s.rcpts,
		UTF8:       messageNeedsUTF8(s.utf8, s.from, s.rcpts, body),
		DSN:        s.dsn, // 8BITMIME: the import marks an 8-bit body again
	}
	if slices.ContainsFunc(s.rcptDSN, func(d queue.RecipientDSN) bool { return !d.IsZero() }) {
		env.RecipientDSN = s.rcptDSN
	}
	o := intakeOrigin{sub: s.submitter, helo: s.smtp.Hostname(), with: s.conn.wire.protocol(), at: time.Now()}
	name, err := writeIntakeFile(s.srv.opts.Maildrop, env, body, o)
	if err != nil {
		s.log.Error("cannot keep message in the maildrop", "from", s.from, "size", len(body), "err", err)
		return s.reject(reasonStorage, replyStorage)
	}
	s.log.Info("accepted into the maildrop: relayq is starting; queued once the queue is open",
		"file", name, "from", s.from, "rcpts", len(s.rcpts), "size", len(body))
	return replyKept(name)
}
