package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// Submission is a message that comes in another way than SMTP (the HTTP
// API, package api), to be taken under the same policy as the socket's.
type Submission struct {
	// Submitter is who sent it: UID from SO_PEERCRED on a Unix socket, or
	// -1 with Addr (and User naming the token) on TCP. Via names the way in.
	Submitter queue.Submitter
	// From is the envelope sender ("" the null sender); Recipients the
	// envelope recipients, as the client gave them (aliases, qualification
	// and the unknown-recipient refusal apply as at RCPT).
	From       string
	Recipients []string
	// Body is the message; any line endings (CRLF after intake).
	Body []byte
	// With names the protocol in Received ("HTTP").
	With string
	// Key, when not "", makes the submission idempotent: queue.PutOnce
	// with Record (its Hash and MessageID).
	Key    string
	Record queue.KeyRecord
}

// MemoryHold is a reservation in intake's memory budget (Options.MaxMemory,
// memory.go) for a way in that holds a message before Submit: the API
// reads its request and composes its message into one, so that its
// requests share the budget, and the per-submitter half of it, with the
// socket's sessions. Submit's copy of the body reserves on its own, under
// the same submitter.
type MemoryHold struct{ h *memHold }

// HoldMemory starts an empty reservation for sub's messages.
func (s *Server) HoldMemory(sub queue.Submitter) *MemoryHold {
	return &MemoryHold{h: s.mem.hold("api " + submitterKey(sub))}
}

// Grow makes the reservation n bytes in all, waiting for room as a
// session's body does. Without room it returns a *SubmitError: 452 4.3.1
// (try again later), or 552 5.3.4 for more than one submitter's share.
func (m *MemoryHold) Grow(n int64) error {
	switch err := m.h.grow(n); {
	case errors.Is(err, errOverShare):
		return &SubmitError{Reply: smtp.ErrDataTooLarge, Err: err}
	case err != nil:
		return &SubmitError{Reply: replyFull, Err: err}
	}
	return nil
}

// Release gives the reservation back; releasing twice is harmless.
func (m *MemoryHold) Release() { m.h.release() }

// SubmitError is a refusal by Submit: the SMTP reply intake would have
// given, and which part of the submission it is about: "from", or
// "recipients" with Index the recipient's position; "" for the message.
type SubmitError struct {
	Reply *smtp.SMTPError
	Field string
	Index int
	Err   error // the cause, for the log; not for the client
}

func (e *SubmitError) Error() string {
	return fmt.Sprintf("spool: submit refused: %d %s", e.Reply.Code, e.Reply.Message)
}

func (e *SubmitError) Unwrap() error { return e.Err }

// Temporary reports a 4xx reply: the client may try again later.
func (e *SubmitError) Temporary() bool { return e.Reply.Code/100 == 4 }

var replyTooManyRcpts = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients"}

// Submit takes a message the way a socket session does, every step of the
// intake policy in the same order: room on disk (min_free), the memory
// budget, the submitter's [limits], the sender and recipient checks,
// aliases (Options.Rewriting), max_recipients, max_message_size, NUL
// octets, the Received stamp (with Date and Message-ID when missing), the
// header rewriting, then queue.Put (queue.PutOnce with a Key). It returns
// only after the commit. A refusal is a *SubmitError; a key used for
// another request is queue.ErrKeyConflict. replayed says the key named a
// message queued before: nothing new was queued.
func (s *Server) Submit(ctx context.Context, sub Submission) (id string, replayed bool, err error) {
	if !s.beginSubmit() {
		return "", false, &SubmitError{Reply: replyShutdown}
	}
	defer s.receiving.Done()
	if s.starting() { // starting.go
		return "", false, &SubmitError{Reply: replyStarting, Err: ErrStarting}
	}
	env, err := s.submitEnvelope(sub)
	if err != nil {
		return "", false, err
	}
	body, eightBit, err := s.submitBody(sub)
	if err != nil {
		return "", false, err
	}
	env.ID = s.queue().NewID()
	body = stampMessage(nil, body, stamp{id: env.ID, hostname: s.opts.Hostname, with: sub.With, submitter: sub.Submitter, now: time.Now()})
	if f := s.rewriting.Load().Message; f != nil {
		env.From, body = f(env.From, body)
	}
	env.UTF8 = messageNeedsUTF8(false, env.From, env.Recipients, body)
	env.EightBit = eightBit
	counted, refused := s.limits.Load().admit(sub.Submitter, int64(len(body)))
	if refused != nil {
		return "", false, &SubmitError{Reply: refused}
	}
	if sub.Key != "" {
		id, replayed, err = s.queue().PutOnce(ctx, env, body, sub.Key, sub.Record)
	} else {
		id, err = s.queue().Put(ctx, env, body)
	}
	counted(err == nil && !replayed)
	log := s.log.With("via", sub.Submitter.Via, "uid", sub.Submitter.UID)
	switch {
	case errors.Is(err, queue.ErrKeyConflict):
		return "", false, err
	case errors.Is(err, queue.ErrFull):
		log.Error("queue full, message refused", "from", env.From, "size", len(body), "err", err)
		return "", false, &SubmitError{Reply: replyFull, Err: err}
	case err != nil:
		log.Error("cannot queue message", "from", env.From, "size", len(body), "err", err)
		return "", false, &SubmitError{Reply: replyStorage, Err: err}
	}
	if !replayed {
		log.Info("accepted", "id", id, "from", env.From, "rcpts", len(env.Recipients), "size", len(body))
	}
	return id, replayed, nil
}

// beginSubmit counts a submission as receiving, as beginData does for a
// session; false once Shutdown has begun.
func (s *Server) beginSubmit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.receiving.Add(1)
	return true
}

// submitEnvelope applies what MAIL FROM and RCPT TO check.
func (s *Server) submitEnvelope(sub Submission) (queue.Envelope, error) {
	env := queue.Envelope{From: sub.From, Submitter: sub.Submitter}
	if sub.From != "" {
		if err := checkAddress(sub.From); err != nil {
			return env, &SubmitError{Reply: replyBadSender, Field: "from", Err: err}
		}
	}
	if err := s.queue().Room(); err != nil {
		return env, &SubmitError{Reply: replyFull, Err: err}
	}
	if s.mem.neverFits(int64(len(sub.Body))) {
		return env, &SubmitError{Reply: smtp.ErrDataTooLarge}
	}
	if r := s.limits.Load().check(sub.Submitter, int64(len(sub.Body))); r != nil {
		return env, &SubmitError{Reply: r}
	}
	if max := s.opts.MaxRecipients; max > 0 && len(sub.Recipients) > max {
		return env, &SubmitError{Reply: replyTooManyRcpts, Field: "recipients", Index: max}
	}
	if len(sub.Recipients) == 0 {
		return env, &SubmitError{Reply: replyBadRcpt, Field: "recipients", Err: errors.New("no recipients")}
	}
	seen := make(map[string]bool)
	for i, to := range sub.Recipients {
		if err := checkAddress(to); err != nil {
			return env, &SubmitError{Reply: replyBadRcpt, Field: "recipients", Index: i, Err: err}
		}
		addrs, reply, err := s.rewriting.Load().recipient(to)
		if err != nil {
			return env, &SubmitError{Reply: reply, Field: "recipients", Index: i, Err: err}
		}
		for _, a := range addrs {
			if k := addressKey(a); !seen[k] {
				seen[k] = true
				env.Recipients = append(env.Recipients, a)
			}
		}
	}
	return env, nil
}

// submitBody normalises the body under the memory budget and the size
// limit, as DATA does.
func (s *Server) submitBody(sub Submission) ([]byte, bool, error) {
	mem := s.mem.hold("api " + submitterKey(sub.Submitter))
	defer mem.release()
	n, body, err := readReserved(bytes.NewReader(sub.Body), s.opts.MaxMessageSize, mem)
	switch {
	case errors.Is(err, errTooLarge), errors.Is(err, errOverShare):
		return nil, false, &SubmitError{Reply: smtp.ErrDataTooLarge, Err: err}
	case errors.Is(err, errNoMemory):
		return nil, false, &SubmitError{Reply: replyFull, Err: err}
	case errors.Is(err, smtp.ErrTooLongLine):
		return nil, false, &SubmitError{Reply: replyLineTooLong(s.opts.MaxLineLength), Err: err}
	case err != nil:
		return nil, false, &SubmitError{Reply: replyStorage, Err: err}
	case n.nul:
		return nil, false, &SubmitError{Reply: replyNUL}
	}
	return body, n.eightBit, nil
}

// submitterKey is the memory budget's key for a submitter: its uid, or its
// address on TCP.
func submitterKey(s queue.Submitter) string {
	if s.UID >= 0 {
		return "uid " + strconv.Itoa(s.UID)
	}
	return "addr " + s.Addr
}
