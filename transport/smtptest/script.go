package smtptest

import (
	"strings"
	"time"
)

// A Fault is something other than a reply that a Step does.
type Fault int

const (
	// NoFault: reply normally (or with Step.Code).
	NoFault Fault = iota
	// Drop closes the connection instead of replying.
	Drop
	// Hang stops reading and never replies; the connection stays open
	// until the client gives up or the server is closed.
	Hang
)

// A Step is what the server does at one occurrence of a command. The zero
// Step is the normal behaviour.
type Step struct {
	// Code replaces the normal reply code; 0 keeps the normal reply.
	// A 421 reply also closes the connection, as RFC 5321 requires.
	Code int
	// Text is the reply text, usually starting with an enhanced status
	// code ("5.1.1 No such user"); lines are separated by "\n". Empty
	// means a generic text for Code.
	Text string
	// Delay is waited before replying (before the greeting, for Greeting).
	Delay time.Duration
	// Fault, when set, happens instead of the reply.
	Fault Fault
	// AfterBytes, for Body steps with a Fault, makes the fault happen once
	// this many bytes of the message have been read, instead of after the
	// final dot.
	AfterBytes int64
	// Raw, when set, is written as it is in place of the reply (garbage, a
	// reply without CRLF, a broken multi-line reply, "999 foo"); the
	// session then goes on as if the normal reply had been sent. For Body
	// (and LMTP) steps that means the message was accepted and recorded.
	Raw string
}

// Reply is a Step that answers with code and text, e.g.
// Reply(550, "5.1.1 No such user").
func Reply(code int, text string) Step {
	return Step{Code: code, Text: text}
}

// Times repeats step n times, for "fail twice, then succeed" scripts.
func Times(n int, step Step) []Step {
	steps := make([]Step, n)
	for i := range steps {
		steps[i] = step
	}
	return steps
}

// A Script says what the server does at each command. Each list is
// consumed one Step per occurrence of its command, counted across all
// connections; once a list is exhausted the server behaves normally.
// SetScript starts the counts again.
type Script struct {
	Greeting []Step // on connect; a code other than 220 closes the connection after it
	Hello    []Step // EHLO, LHLO or HELO
	StartTLS []Step
	Auth     []Step // after the credentials were read; a Code overrides the check
	Mail     []Step
	// Rcpt holds steps per recipient address (matched without regard to
	// case); the key "*" applies to addresses not listed.
	Rcpt map[string][]Step
	Data []Step // the DATA command, before 354
	// Body applies to the message: with AfterBytes, mid-body; else after
	// the final dot. Its Code replaces the final reply (in LMTP, the reply
	// for every recipient that LMTP does not script).
	Body []Step
	// LMTP holds the per-recipient replies after the final dot, keyed like
	// Rcpt. A Drop or Hang at one recipient happens after the replies for
	// the recipients before it were sent.
	LMTP map[string][]Step
	Rset []Step
	Noop []Step
}

// stepList finds the list for key in m: the address itself (any case), else
// "*". It returns the key matched, for counting.
func stepList(m map[string][]Step, addr string) (string, []Step) {
	for k, steps := range m {
		if strings.EqualFold(k, addr) {
			return strings.ToLower(k), steps
		}
	}
	if steps, ok := m["*"]; ok {
		return "*", steps
	}
	return "", nil
}

// defaultText is the reply text for a scripted code given without text.
func defaultText(code int) string {
	switch code / 100 {
	case 2:
		return "2.0.0 Ok (scripted)"
	case 4:
		return "4.0.0 Temporary failure (scripted)"
	case 5:
		return "5.0.0 Permanent failure (scripted)"
	}
	return "scripted reply"
}
