package queue

import (
	"fmt"
	"strings"
	"time"
)

// Status is where one recipient of a queued message stands.
type Status string

const (
	// StatusQueued: not yet tried.
	StatusQueued Status = "queued"
	// StatusDeferred: tried, failed temporarily, waiting for its next attempt.
	StatusDeferred Status = "deferred"
	// StatusDelivered: the relay accepted it (2xx).
	StatusDelivered Status = "delivered"
	// StatusDead: failed permanently or expired; kept in the dead-letter bucket.
	StatusDead Status = "dead"
)

// Pending reports whether a recipient in this status still needs an attempt.
func (s Status) Pending() bool { return s == StatusQueued || s == StatusDeferred }

// Reply is an SMTP reply as the queue keeps it. The queue knows nothing of
// SMTP on the wire; delivery fills this in from the relay's answer, or from a
// local failure (Code 0, the failure's text in Lines).
type Reply struct {
	Code     int      `json:"code"`
	Enhanced string   `json:"enhanced,omitempty"` // "5.1.1", empty if the relay sent none
	Lines    []string `json:"lines,omitempty"`
	// Stage is the step of the relay session the reply answered ("rcpt",
	// "dot", …), empty when unknown. It is kept apart so that the relay's
	// own text stays exactly as sent.
	Stage string `json:"stage,omitempty"`
}

// String renders the reply on one line, like Postfix's "said:" text.
func (r *Reply) String() string {
	if r == nil {
		return ""
	}
	text := strings.Join(r.Lines, " ")
	switch {
	case r.Code == 0:
	case r.Enhanced != "":
		text = fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, text)
	default:
		text = fmt.Sprintf("%d %s", r.Code, text)
	}
	if r.Stage != "" {
		text += " (in reply to " + r.Stage + ")"
	}
	return text
}

// Submitter records who handed a message to relayq.
type Submitter struct {
	// UID of the peer on the Unix socket (SO_PEERCRED), or of the process
	// that wrote a maildrop file; -1 when unknown (a TCP listener).
	UID int `json:"uid"`
	// Via names the way in: "socket", "tcp" (with Addr) or "maildrop".
	Via string `json:"via,omitempty"`
	// Addr is the peer's address for TCP submissions.
	Addr string `json:"addr,omitempty"`
}

// Envelope is what a submission hands to Put, besides the body.
type Envelope struct {
	From       string // reverse path; "" is the null sender
	Recipients []string
	Submitter  Submitter
	// UTF8 asks for SMTPUTF8 towards the relay (internationalised addresses
	// or headers); EightBit marks a body with 8-bit octets (BODY=8BITMIME).
	UTF8     bool
	EightBit bool
}

// Recipient is one forward path of a queued message and its state.
type Recipient struct {
	Address     string    `json:"address"`
	Status      Status    `json:"status"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastReply   *Reply    `json:"last_reply,omitempty"`
}

// Message is the small record of a queued message: envelope, submitter and
// per-recipient state. The body lives apart (see Queue.Body), so changing
// this record never rewrites the body.
type Message struct {
	ID         string      `json:"id"`
	From       string      `json:"from"`
	Recipients []Recipient `json:"recipients"`
	Submitter  Submitter   `json:"submitter"`
	Created    time.Time   `json:"created"`
	Size       int64       `json:"size"`
	UTF8       bool        `json:"smtputf8,omitempty"`
	EightBit   bool        `json:"8bitmime,omitempty"`
	// Attempts counts delivery attempts of the message as a whole.
	Attempts int `json:"attempts"`
	// NextAttempt is when the message is next due: the earliest NextAttempt
	// of its pending recipients.
	NextAttempt time.Time `json:"next_attempt"`
	// LeasedUntil is set while a worker holds the message.
	LeasedUntil time.Time `json:"leased_until,omitzero"`
	leaseToken  uint64
}

// Pending returns the recipients that still need an attempt.
func (m *Message) Pending() []Recipient {
	var out []Recipient
	for _, r := range m.Recipients {
		if r.Status.Pending() {
			out = append(out, r)
		}
	}
	return out
}

// DeadLetter is a message (or the part of it) that failed permanently: the
// envelope, and only the recipients that died, each with the reply that
// killed it. Its body is kept until the dead letter is purged.
type DeadLetter struct {
	ID         string      `json:"id"`
	From       string      `json:"from"`
	Recipients []Recipient `json:"recipients"`
	Submitter  Submitter   `json:"submitter"`
	Created    time.Time   `json:"created"`
	Size       int64       `json:"size"`
	Attempts   int         `json:"attempts"`
	Died       time.Time   `json:"died"`
}

// Result is what became of one recipient in one attempt.
type Result int

const (
	// Delivered: the relay accepted the recipient.
	Delivered Result = iota + 1
	// Deferred: try again at Outcome.NextAttempt.
	Deferred
	// Failed: permanent failure; the recipient moves to the dead letters.
	Failed
)

// Outcome records one attempt's result for one recipient, named by address.
type Outcome struct {
	Address     string
	Result      Result
	Reply       *Reply
	NextAttempt time.Time // for Deferred
}
