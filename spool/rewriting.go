package spool

import (
	"fmt"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// Rewriting is how intake changes addresses and headers, the same way on
// every way in (socket, listeners, maildrop import): cmd/relayq builds it
// from package rewrite. The zero value changes nothing.
type Rewriting struct {
	// Recipient maps one envelope recipient, as the client gave it, to the
	// addresses the message goes to (aliases, qualification). An error
	// refuses the recipient: 550 5.1.1 at RCPT; the maildrop sets the file
	// aside. Each address it returns must pass intake's address check, or
	// the recipient is refused with 553 5.1.3.
	Recipient func(addr string) ([]string, error)
	// Message rewrites the envelope sender and the header once the whole
	// message is in (after Received, Date and Message-ID were added). It
	// must keep CRLF line endings.
	Message func(from string, msg []byte) (string, []byte)
}

var (
	replyUnknownRcpt = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Recipient address rejected: no such local user"}
	replyBadTarget   = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Recipient address rejected: it maps to an invalid address"}
)

// recipient applies Recipient to one address; the reply is for RCPT.
func (w Rewriting) recipient(addr string) ([]string, *smtp.SMTPError, error) {
	if w.Recipient == nil {
		return []string{addr}, nil, nil
	}
	out, err := w.Recipient(addr)
	if err != nil {
		return nil, replyUnknownRcpt, err
	}
	for _, a := range out {
		if err := checkAddress(a); err != nil {
			return nil, replyBadTarget, fmt.Errorf("%s maps to %q: %w", addr, a, err)
		}
	}
	return out, nil, nil
}

// Apply applies Recipient to every recipient of env (each DSN request
// goes with every address its recipient maps to; duplicates are kept
// once) and Message to its sender and body, as the maildrop import does
// (and `relayq rewrite --dry-run` shows).
func (w Rewriting) Apply(env queue.Envelope, body []byte) (queue.Envelope, []byte, error) {
	var rcpts []string
	var dsns []queue.RecipientDSN
	seen := make(map[string]bool)
	for i, r := range env.Recipients {
		out, _, err := w.recipient(r)
		if err != nil {
			return env, nil, fmt.Errorf("recipient refused: %w", err)
		}
		for _, a := range out {
			if k := addressKey(a); !seen[k] {
				seen[k] = true
				rcpts = append(rcpts, a)
				if env.RecipientDSN != nil {
					dsns = append(dsns, env.RecipientDSN[i])
				}
			}
		}
	}
	env.Recipients, env.RecipientDSN = rcpts, dsns
	if w.Message != nil {
		env.From, body = w.Message(env.From, body)
	}
	return env, body, nil
}
