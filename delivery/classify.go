package delivery

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"relayq/queue"
	"relayq/transport"
)

// verdict is what one attempt means for one recipient.
type verdict struct {
	result queue.Result
	reply  *queue.Reply
	// uncertain: the relay may have the message although we saw no reply.
	uncertain bool
}

// classifyTransaction turns a failed transaction (Send's error) into the
// verdict for every recipient in it.
func classifyTransaction(err error) verdict {
	var te *transport.Error
	if errors.As(err, &te) && te.AfterDot {
		return verdict{result: queue.Deferred, reply: replyOf(err), uncertain: true}
	}
	if errors.As(err, &te) && !te.Temporary() {
		return verdict{result: queue.Failed, reply: replyOf(err)}
	}
	return verdict{result: queue.Deferred, reply: replyOf(err)}
}

// classifyRecipient turns one recipient's result from a transaction that
// went through into its verdict.
func classifyRecipient(r transport.RecipientResult) verdict {
	if r.Err == nil {
		return verdict{result: queue.Delivered, reply: successReply(r.Reply)}
	}
	var te *transport.Error
	if errors.As(r.Err, &te) && te.AfterDot {
		// LMTP: the connection broke before this recipient's reply.
		return verdict{result: queue.Deferred, reply: replyOf(r.Err), uncertain: true}
	}
	var se *smtp.SMTPError
	if errors.As(r.Err, &se) && se.Code/100 == 5 && se.Code != 552 {
		// 552 on a recipient means "too much mail" (RFC 5321
		// §4.5.3.1.10: treat it as 452); every other 5xx is final. A
		// code that is no valid reply (999) is not a refusal.
		return verdict{result: queue.Failed, reply: replyOf(r.Err)}
	}
	return verdict{result: queue.Deferred, reply: replyOf(r.Err)}
}

// replyOf keeps the relay's reply untouched when there is one, else the
// refusal relayq decided by itself (localReply, ownreply.go), else the
// local failure's text (Code 0).
func replyOf(err error) *queue.Reply {
	var local *transport.LocalError
	if errors.As(err, &local) {
		return localReply(local.Reply)
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		r := &queue.Reply{Code: se.Code, Enhanced: enhancedText(se.EnhancedCode), Lines: strings.Split(se.Message, "\n")}
		var te *transport.Error
		if errors.As(err, &te) {
			r.Stage = te.Stage.String()
		}
		return r
	}
	return &queue.Reply{Lines: []string{err.Error()}}
}

// enhancedText is an enhanced status code as a reply shows it ("5.1.1");
// "" when there is none.
func enhancedText(ec smtp.EnhancedCode) string {
	if ec == smtp.EnhancedCodeNotSet || ec == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// successReply records the relay's final 2xx text, e.g. "2.0.0 Ok: queued
// as 4Xyz", which names the message in the relay's own logs.
func successReply(text string) *queue.Reply {
	r := &queue.Reply{Code: 250}
	if code, rest, ok := strings.Cut(text, " "); ok && isEnhanced(code) {
		r.Enhanced, text = code, rest
	}
	if text != "" {
		r.Lines = []string{text}
	}
	return r
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
