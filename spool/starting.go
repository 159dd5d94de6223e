package spool

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// While the daemon starts, intake listens before the queue is open: a
// large queue file takes seconds to open and check, and a client refused
// at connect (ECONNREFUSED on the loopback port, ENOENT on the socket)
// sees relayq as down. A Server made without Options.Queue answers every
// session until Ready with:
//
//	220 <hostname> ESMTP Service Ready
//	EHLO/HELO, NOOP, RSET, VRFY, QUIT as usual
//	MAIL FROM → 451 4.3.0 relayq is starting; try again shortly
//
// Why 451 at MAIL rather than a 421 greeting and close: a 4xx to MAIL is
// the one temporary failure every client handles per message, with the
// reason shown to whoever sent it. Postfix's smtp client defers that
// message only (a 421 greeting counts as the host refusing to talk, which
// marks the whole destination down for a while); msmtp and swaks report
// the reply and exit with a temporary failure; PHP and Python mail
// libraries raise "MAIL FROM failed: 451 4.3.0 relayq is starting" where
// a bad greeting reads like "could not connect". A client that holds its
// connection may try MAIL again on it once relayq is ready, and the
// session is not dropped. `relayq sendmail` (Submit) takes this reply for
// an unreachable daemon and writes the message into the maildrop, which
// the daemon imports once it is ready.
//
// Nothing is accepted before Ready: the gate is at MAIL, so no message
// gets as far as DATA, and every 250 still follows a commit.
//
// Listeners that systemd passed (socket activation, Options.Inherited) are
// not served until Ready: there a connection made while relayq starts
// waits in the socket's backlog and then gets its 250, as it did before
// and as it does while relayq restarts. A socket systemd holds was never
// refused, so there is nothing to gain by answering 451 on it.

// replyStarting is the answer to MAIL while the queue is not open yet.
var replyStarting = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: startingText}

// startingText is the text of replyStarting, which Submit recognises.
const startingText = "relayq is starting; try again shortly"

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
// starting: it greets, and answers MAIL with the starting reply (no
// message is sent). `relayq status` asks it when the control socket,
// which comes once the queue is open, does not answer.
func Starting(ctx context.Context, socket string) bool {
	// A socket systemd holds is served only once relayq is ready: there a
	// connection waits in the backlog instead.
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
	if err := c.Hello("localhost"); err != nil {
		return false
	}
	err = c.Mail("", nil)
	_ = c.Quit()
	return isStarting(err)
}
