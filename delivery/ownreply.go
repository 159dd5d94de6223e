package delivery

import (
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// Not every reply a recipient is recorded with is one a relay sent. relayq
// writes its own in three shapes:
//
//   - a local failure (a refused connection, a timeout): Code 0, the
//     error's text in Lines, as queue.Reply documents;
//   - a refusal relayq decided by itself (transport.LocalError: an address
//     it will not put on the wire, a message the relay said it cannot
//     take): the code relayq chose, so that dead-letter listings,
//     --reply-class and metrics sort it with the relay refusals it stands
//     for, and localLine as its first line;
//   - the reply of a recipient that ran out of time (expired): the relay's
//     last reply kept whole inside it, with its code, enhanced code and
//     stage, so that it still sorts by the relay's code.
//
// queue.Reply has no field that says whose reply it is, so these shapes
// are fixed here, and accountOf reads them back for notices, which must
// show only a relay's own reply as "Diagnostic-Code: smtp;" (RFC 3464
// §2.3.6). The operator's expiry (queue.ExpiredByOperator) and the corrupt
// body (queue.CorruptLine) are the queue's own, both Code 0.

const (
	// localLine is the first line of a refusal relayq decided by itself.
	localLine = "refused by relayq:"
	// expiredPrefix starts the first line of an expired recipient's reply,
	// lastReplyPrefix its second, which carries the last reply.
	expiredPrefix   = "message expired after "
	lastReplyPrefix = "last reply: "
)

// localReply records a refusal relayq decided by itself (the SMTP reply a
// relay would have given, from transport.LocalError).
func localReply(se *smtp.SMTPError) *queue.Reply {
	return &queue.Reply{Code: se.Code, Enhanced: enhancedText(se.EnhancedCode), // classify.go
		Lines: append([]string{localLine}, strings.Split(se.Message, "\n")...)}
}

// expired is the reply of a recipient that ran out of time: it keeps the
// last reply (nil if none) whole, so that its String reads "451 4.3.0
// message expired after 120h0m0s in the queue last reply: 451 4.3.0 try
// later (in reply to rcpt)" and unexpired gives the last reply back.
func expired(last *queue.Reply, lifetime time.Duration) *queue.Reply {
	r := &queue.Reply{Lines: []string{expiredPrefix + lifetime.String() + " in the queue"}}
	if last == nil {
		return r
	}
	r.Code, r.Enhanced, r.Stage = last.Code, last.Enhanced, last.Stage
	first, rest := "", last.Lines
	if len(rest) > 0 {
		first, rest = rest[0], rest[1:]
	}
	r.Lines = append(r.Lines, lastReplyPrefix+codeText(last)+first)
	r.Lines = append(r.Lines, rest...)
	return r
}

// codeText is how Reply.String starts: "451 4.3.0 ", "451 ", or "" for
// Code 0.
func codeText(r *queue.Reply) string {
	switch {
	case r.Code == 0:
		return ""
	case r.Enhanced != "":
		return fmt.Sprintf("%d %s ", r.Code, r.Enhanced)
	}
	return fmt.Sprintf("%d ", r.Code)
}

// isExpired reports whether r is an expired recipient's reply, by delivery
// (expired) or by an operator (Code 0, queue.ExpiredByOperator first). A
// relay's reply that merely begins with the same words is not.
func isExpired(r *queue.Reply) bool {
	switch {
	case r == nil || len(r.Lines) == 0:
		return false
	case r.Lines[0] == queue.ExpiredByOperator:
		return r.Code == 0
	case !strings.HasPrefix(r.Lines[0], expiredPrefix):
		return false
	case len(r.Lines) == 1:
		return r.Code == 0 // expired(nil, …)
	}
	return strings.HasPrefix(r.Lines[1], lastReplyPrefix)
}

// byOperator reports whether r is the reply of an operator's expiry.
func byOperator(r *queue.Reply) bool {
	return isExpired(r) && r.Lines[0] == queue.ExpiredByOperator
}

// unexpired returns the last reply an expired reply carries; nil if it
// carries none (or r is not one).
func unexpired(r *queue.Reply) *queue.Reply {
	if r == nil || len(r.Lines) < 2 || !strings.HasPrefix(r.Lines[0], expiredPrefix) {
		return nil
	}
	first, ok := strings.CutPrefix(r.Lines[1], lastReplyPrefix+codeText(r))
	if !ok {
		return nil
	}
	last := &queue.Reply{Code: r.Code, Enhanced: r.Enhanced, Stage: r.Stage}
	if first != "" || len(r.Lines) > 2 {
		last.Lines = append([]string{first}, r.Lines[2:]...)
	}
	return last
}

// fromRelay reports whether r is a reply a relay sent.
func fromRelay(r *queue.Reply) bool {
	return r != nil && r.Code != 0 && !isExpired(r) && (len(r.Lines) == 0 || r.Lines[0] != localLine)
}

// account is what a notice says of why a recipient failed (or waits).
type account struct {
	// relay is the relay's last reply to it; nil when no relay replied,
	// or the last word was relayq's.
	relay *queue.Reply
	// own is relayq's own account: why it gave up ("message expired after
	// …") or the local failure; "" when the relay's reply says it all.
	own string
}

// accountOf reads a recipient's last reply. An operator's expiry keeps
// only the text of the relay's reply, so the relay's last reply to addr is
// looked up in the message's history.
func accountOf(r *queue.Reply, history []queue.Attempt, addr string) account {
	switch {
	case r == nil:
		return account{}
	case fromRelay(r):
		return account{relay: r}
	case byOperator(r):
		if last := lastReplyTo(history, addr); fromRelay(last) {
			return account{relay: last, own: r.Lines[0]}
		}
		return account{own: strings.Join(r.Lines, "; ")}
	case isExpired(r):
		if last := unexpired(r); fromRelay(last) {
			return account{relay: last, own: r.Lines[0]}
		}
		return account{own: strings.Join(r.Lines, "; ")}
	}
	return account{own: strings.Join(r.Lines, " ")}
}

// lastReplyTo is the reply of the latest attempt in history that tried
// addr; nil if none did.
func lastReplyTo(history []queue.Attempt, addr string) *queue.Reply {
	for i := len(history) - 1; i >= 0; i-- {
		for _, res := range history[i].Results {
			for _, a := range res.Recipients {
				if a == addr {
					return res.Reply
				}
			}
		}
	}
	return nil
}

// line is the account on one line, for the notice's text for people.
func (a account) line() string {
	switch {
	case a.relay != nil && a.own != "":
		return a.own + "; the relay's last reply: " + a.relay.String()
	case a.relay != nil:
		return a.relay.String()
	case a.own != "":
		return a.own
	}
	return "no reply"
}

// diagnostic is the Diagnostic-Code field (RFC 3464 §2.3.6): the relay's
// reply as it sent it ("smtp; 550 5.1.1 …"), else relayq's own account
// ("x-relayq; …"); "" when there is neither.
func (a account) diagnostic() string {
	if r := a.relay; r != nil {
		return "smtp; " + strings.TrimSuffix(codeText(r)+clean(strings.Join(r.Lines, " ")), " ")
	}
	if a.own != "" {
		return "x-relayq; " + clean(a.own)
	}
	return ""
}
