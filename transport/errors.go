package transport

import (
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"
)

// Stage names the step of a relay session at which a Send failed.
type Stage int

const (
	StageDial     Stage = iota + 1 // connecting (or waiting for a pooled connection)
	StageGreeting                  // the relay's 220 greeting
	StageTLS                       // implicit TLS, STARTTLS, or TLS required but not offered
	StageHello                     // EHLO/LHLO (HELO)
	StageAuth                      // AUTH, or credentials that may not be sent
	StageMail                      // MAIL FROM, and local checks of the message against the relay
	StageRcpt                      // RCPT TO, when the whole transaction failed there (421, I/O)
	StageData                      // the DATA command or writing the body
	StageDot                       // after the final dot, waiting for the reply
)

var stageNames = map[Stage]string{
	StageDial: "dial", StageGreeting: "greeting", StageTLS: "tls", StageHello: "hello",
	StageAuth: "auth", StageMail: "mail", StageRcpt: "rcpt", StageData: "data", StageDot: "dot",
}

func (s Stage) String() string {
	if n, ok := stageNames[s]; ok {
		return n
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// Error is a transaction that failed as a whole: no recipient was
// delivered by it. It is also the per-recipient error for LMTP recipients
// whose reply was lost when the connection broke after the final dot.
type Error struct {
	Stage Stage
	// Err is the cause: the relay's *smtp.SMTPError, untouched, when it
	// replied; a *LocalError when relayq refused by itself; else a
	// network, TLS or timeout error (or one of the Err* values below).
	Err error
	// AfterDot: the final dot was sent and no reply arrived, so the relay
	// may have taken the message; sending it again may duplicate it.
	AfterDot bool
	// Transcript is the exchange with the relay up to the failure, as
	// Result.Transcript; "" when no connection was made. Set on the error
	// Send returns, not on per-recipient errors.
	Transcript string
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "transport: " + e.Stage.String() + ": failed"
	}
	return "transport: " + e.Stage.String() + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the message may succeed if sent again later.
// An AfterDot failure is temporary, even with a malformed 5xx-like reply.
// Only a 5xx reply to the message itself (MAIL, DATA, after the dot), or a
// local refusal classed 5xx, is permanent. A failure of the session (dial,
// greeting, TLS, hello, auth) is always temporary whatever its code: a
// misconfigured or unwell relay never dead-letters mail.
func (e *Error) Temporary() bool {
	if e.AfterDot {
		return true // the relay may have the message; nothing says it refused it
	}
	switch e.Stage {
	case StageMail, StageRcpt, StageData, StageDot:
		var se *smtp.SMTPError
		if errors.As(e.Err, &se) && se.Code >= 500 && se.Code <= 599 {
			return false
		}
	}
	return true
}

// LocalError is a refusal relayq decides by itself (an address it will not
// put on the wire, a message the relay has said it cannot take), written as
// the SMTP reply a relay would give, so that it is classified and recorded
// the same way. errors.As finds the *smtp.SMTPError inside.
type LocalError struct {
	Reply *smtp.SMTPError
}

func (e *LocalError) Error() string { return "refused by relayq: " + e.Reply.Error() }

func (e *LocalError) Unwrap() error { return e.Reply }

func localError(code int, enhanced smtp.EnhancedCode, format string, args ...any) *LocalError {
	return &LocalError{Reply: &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: fmt.Sprintf(format, args...)}}
}

// Causes a Send can fail with, always inside an *Error; test with errors.Is.
var (
	// ErrClosed: Send was called after Close.
	ErrClosed = errors.New("transport closed")
	// ErrTLSUnavailable: TLS is required but the relay does not offer
	// STARTTLS (or IgnoreTLS forbids it). Nothing was sent in clear.
	ErrTLSUnavailable = errors.New("TLS is required but not available, nothing was sent")
	// ErrInsecureAuth: credentials are configured but the connection is
	// not encrypted and insecure authentication is not allowed.
	ErrInsecureAuth = errors.New("refusing to send credentials over an unencrypted connection (use TLS, or allow insecure auth for this relay)")
	// ErrAuthUnavailable: credentials are configured but the relay offers
	// no AUTH mechanism relayq can use with them, or not the configured
	// one; the error names what the relay offers.
	ErrAuthUnavailable = errors.New("the relay offers no usable AUTH mechanism")
	// ErrTokenRejected: the relay refused the OAuth2 access token (535,
	// or an error challenge). The relay's reply is inside as well.
	ErrTokenRejected = errors.New("the relay rejected the OAuth2 access token")
)
