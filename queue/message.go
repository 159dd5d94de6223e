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
	// StatusUncertain: maybe delivered. The connection was lost after the
	// final dot, before the relay's reply, so the relay may have the
	// message. It is retried like a deferred recipient (a possible
	// duplicate), unless delivery holds the message for the operator.
	StatusUncertain Status = "uncertain"
)

// Pending reports whether a recipient in this status still needs an attempt.
func (s Status) Pending() bool {
	return s == StatusQueued || s == StatusDeferred || s == StatusUncertain
}

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
	// UID of the peer on the Unix socket (SO_PEERCRED), of the owner of a
	// TCP client's socket (NETLINK_SOCK_DIAG), or of the process that wrote
	// a maildrop file; -1 when unknown.
	UID int `json:"uid"`
	// Via names the way in: "socket", "tcp" (with Addr), "maildrop", or
	// ViaNotice for relayq's own delivery status notifications.
	Via string `json:"via,omitempty"`
	// Addr is the peer's address for TCP submissions.
	Addr string `json:"addr,omitempty"`
	// User is the name of UID in the user database at intake; "" when
	// the uid is unknown or has no name.
	User string `json:"user,omitempty"`
	// Unit is the systemd unit the submitting process ran in
	// ("cron.service", "session-3.scope"), read from its cgroup; "" when
	// it could not be read.
	Unit string `json:"unit,omitempty"`
}

// Envelope is what a submission hands to Put, besides the body.
type Envelope struct {
	// ID is the queue ID to store the message under, from NewID, for a
	// submitter that names it in the message (a Received header) before
	// Put; "" lets Put pick one.
	ID         string
	From       string // reverse path; "" is the null sender
	Recipients []string
	Submitter  Submitter
	// UTF8 asks for SMTPUTF8 towards the relay (internationalised addresses
	// or headers); EightBit marks a body with 8-bit octets (BODY=8BITMIME).
	UTF8     bool
	EightBit bool
	// DSN holds the submission's RET and ENVID (RFC 3461); zero if none.
	DSN DSN
	// RecipientDSN holds each recipient's NOTIFY and ORCPT, parallel to
	// Recipients; nil when no recipient had any.
	RecipientDSN []RecipientDSN
}

// DSN is the delivery status notification request of a message as a whole
// (RFC 3461 §4.3, §4.4), kept as submitted and passed on to the relay when
// it offers DSN.
type DSN struct {
	Return     string `json:"ret,omitempty"`   // RET: "FULL" or "HDRS"; "" when not given
	EnvelopeID string `json:"envid,omitempty"` // ENVID, xtext-decoded; "" when not given
}

// RecipientDSN is one recipient's DSN request (RFC 3461 §4.1, §4.2).
type RecipientDSN struct {
	// Notify is NOTIFY: ["NEVER"], or some of "SUCCESS", "FAILURE",
	// "DELAY"; nil when not given (the relay's default).
	Notify []string `json:"notify,omitempty"`
	// OrigType and Orig are ORCPT: the address type ("RFC822" or
	// "UTF-8") and the decoded original recipient; "" when not given.
	OrigType string `json:"orcpt_type,omitempty"`
	Orig     string `json:"orcpt,omitempty"`
}

// IsZero reports whether the recipient asked for nothing.
func (d RecipientDSN) IsZero() bool {
	return len(d.Notify) == 0 && d.OrigType == "" && d.Orig == ""
}

// Recipient is one forward path of a queued message and its state.
type Recipient struct {
	Address     string    `json:"address"`
	Status      Status    `json:"status"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastReply   *Reply    `json:"last_reply,omitempty"`
	// Relay names the relay of its latest attempt (or the one it waits
	// for while its route's relays are down); "" before the first.
	Relay string `json:"relay,omitempty"`
	// DSN is what the submission asked for this recipient; zero in
	// records written before DSN was kept.
	DSN RecipientDSN `json:"dsn,omitzero"`
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
	DSN        DSN         `json:"dsn,omitzero"` // zero in records written before DSN was kept
	// Attempts counts delivery attempts of the message as a whole.
	Attempts int `json:"attempts"`
	// NextAttempt is when the message is next due: the earliest NextAttempt
	// of its pending recipients.
	NextAttempt time.Time `json:"next_attempt"`
	// LeasedUntil is set while a worker holds the message.
	LeasedUntil time.Time `json:"leased_until,omitzero"`
	// Held is set by an operator (see Queue.Hold): a held message has no
	// schedule entry, so it is never leased until Queue.Unhold.
	Held      bool      `json:"held,omitempty"`
	HeldSince time.Time `json:"held_since,omitzero"`
	// Requeued is when an operator last brought the message back from the
	// dead letters; its lifetime counts from then (see LifetimeStart).
	Requeued time.Time `json:"requeued,omitzero"`
	// History holds the latest delivery attempts, oldest first, capped
	// (see history.go) so that the record stays small.
	History []Attempt `json:"history,omitempty"`
	// BodyCRC32C is the CRC-32C (Castagnoli) of the body as it was
	// queued; delivery and Check verify the body against it (body.go).
	// nil in records written before bodies had a checksum: such a body
	// is delivered unchecked.
	BodyCRC32C *uint32 `json:"body_crc32c,omitempty"`
	// Damaged is never stored: listings set it, with the decoding error,
	// on the stand-in for a record that does not decode, which has only
	// its ID, Created (from the ID) and Size (the stored body's length).
	// Its State is StateDamaged.
	Damaged string `json:"damaged,omitempty"`
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
	// Reason says why the message as a whole died when no relay's reply
	// did it: ReasonCorrupt or ReasonDamaged; empty otherwise.
	Reason string `json:"reason,omitempty"`
	// Damaged is never stored: ListDead and GetDead set it, with the
	// decoding error, on the stand-in for a dead letter whose record does
	// not decode (ID, Created from the ID, Size of the kept body).
	Damaged string `json:"damaged,omitempty"`
	// Record is the message record as it was when the last of these
	// recipients died (with every recipient's state and the attempt
	// history), so that Queue.Requeue can put it back as it was. Absent in
	// dead letters written before it existed.
	Record *Message `json:"record,omitempty"`
}

// Reasons a message as a whole goes to the dead letters (DeadLetter.Reason).
const (
	// ReasonCorrupt: the body no longer matched its checksum, so it was
	// not sent (Queue.DeadCorrupt).
	ReasonCorrupt = "corrupt"
	// ReasonDamaged: the record did not decode and an operator expired
	// the message; the dead letter keeps the body, but not the envelope.
	ReasonDamaged = "damaged"
)

// Result is what became of one recipient in one attempt.
type Result int

const (
	// Delivered: the relay accepted the recipient.
	Delivered Result = iota + 1
	// Deferred: try again at Outcome.NextAttempt.
	Deferred
	// Failed: permanent failure; the recipient moves to the dead letters.
	Failed
	// Waiting: not tried, because every relay of its route is down; it
	// waits for Outcome.NextAttempt with its attempt count, status and
	// last reply unchanged.
	Waiting
)

// Outcome records one attempt's result for one recipient, named by address.
type Outcome struct {
	Address     string
	Result      Result
	Reply       *Reply
	NextAttempt time.Time // for Deferred
	// Uncertain marks a Deferred outcome whose attempt was cut off after
	// the final dot: the recipient becomes StatusUncertain.
	Uncertain bool
	// Hold puts the message on hold after this attempt, as Queue.Hold
	// does, instead of scheduling its next attempt.
	Hold bool
	// Relay names the relay tried (or waited for); kept in
	// Recipient.Relay. "" leaves it as it was.
	Relay string
}
