package delivery

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"relayq/queue"
)

// A delivery status notification as RFC 3464 has it: a multipart/report
// (RFC 6522) with a part for people, a message/delivery-status part with
// one block per recipient, and the headers of the original message as
// text/rfc822-headers (never its body, whatever RET asked: a notice should
// stay small).

// report is what a notice says.
type report struct {
	kind       queue.NoticeKind
	hostname   string // this relayq, for Reporting-MTA and From
	relay      string // the relay's host name, for Remote-MTA; "" to leave it out
	from       string // the original envelope sender
	to         string // who gets the notice
	postmaster bool   // to the postmaster rather than the sender
	id         string // the original queue ID
	envid      string // the original ENVID (RFC 3461), "" if none
	arrival    time.Time
	attempts   int
	rcpts      []queue.Recipient
	history    []queue.Attempt // the message's attempts, where accountOf looks for the relay's last reply
	headers    []byte          // the original headers, CRLF, with the blank line
	retryUntil time.Time       // delayed: when relayq gives up; zero if unknown
	waited     time.Duration
	now        time.Time
}

// maxNoticeHeaders caps how much of the original header block a notice
// carries.
const maxNoticeHeaders = 64 << 10

// readHeaders reads the header block of a stored body (up to and including
// the blank line), at most maxNoticeHeaders bytes.
func readHeaders(body io.Reader) ([]byte, error) {
	r := bufio.NewReader(io.LimitReader(body, maxNoticeHeaders))
	var out []byte
	for {
		line, err := r.ReadBytes('\n')
		out = append(out, line...)
		if bytes.Equal(line, []byte("\r\n")) || err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (r *report) subject() string {
	s := "Undelivered Mail Returned to Sender"
	if r.kind == queue.NoticeDelayed {
		s = "Delayed Mail (still being retried)"
	}
	if r.postmaster {
		s = "Postmaster Copy: " + s
	}
	return s
}

// build returns the notice, CRLF line endings, ready for queue.PutNotice.
func (r *report) build() []byte {
	boundary := newBoundary()
	var b bytes.Buffer
	h := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	h("From: Mail Delivery System <MAILER-DAEMON@%s>", r.hostname)
	h("To: <%s>", r.to)
	h("Subject: %s", r.subject())
	h("Date: %s", r.now.Format(time.RFC1123Z))
	h("Message-ID: <%s.%s.%d@%s>", r.kind, r.id, r.now.UnixNano(), r.hostname)
	h("Auto-Submitted: auto-replied")
	h("MIME-Version: 1.0")
	h("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"", boundary)
	h("")
	h("This is a MIME-encapsulated delivery status notification.")
	h("")
	h("--%s", boundary)
	h("Content-Type: text/plain; charset=utf-8")
	h("Content-Transfer-Encoding: 8bit")
	h("Content-Description: Notification")
	h("")
	b.WriteString(crlf(r.humanText()))
	h("")
	h("--%s", boundary)
	h("Content-Type: message/delivery-status")
	h("Content-Description: Delivery report")
	h("")
	r.writeStatus(&b)
	h("--%s", boundary)
	h("Content-Type: text/rfc822-headers")
	h("Content-Description: Headers of the message")
	h("")
	b.Write(r.headers)
	if !bytes.HasSuffix(r.headers, []byte("\r\n")) {
		h("")
	}
	h("--%s--", boundary)
	return b.Bytes()
}

func (r *report) humanText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at host %s (relayq).\n\n", r.hostname)
	whose := "Your message"
	if r.postmaster {
		whose = fmt.Sprintf("A message from <%s>", r.from)
	}
	if r.kind == queue.NoticeDelayed {
		b.WriteString("This is a warning only: there is no need to send the message again.\n\n")
		fmt.Fprintf(&b, "%s (queue ID %s) has not been delivered yet to the recipients\nbelow after %s in the queue.", whose, r.id, r.waited.Round(time.Minute))
		if !r.retryUntil.IsZero() {
			fmt.Fprintf(&b, " relayq keeps trying until\n%s.", r.retryUntil.Format(time.RFC1123Z))
		}
		b.WriteString("\n\n")
	} else {
		fmt.Fprintf(&b, "%s (queue ID %s) could not be delivered to the recipients\nbelow; relayq gave up on them after %d attempt(s).\n\n", whose, r.id, r.attempts)
	}
	for _, rc := range r.rcpts {
		fmt.Fprintf(&b, "<%s>: %s\n", rc.Address, clean(accountOf(rc.LastReply, r.history, rc.Address).line()))
	}
	b.WriteString("\nThe headers of the message are attached.\n")
	return b.String()
}

// writeStatus writes the message/delivery-status part (RFC 3464 §2.2,
// §2.3): the per-message fields, then a block per recipient.
func (r *report) writeStatus(b *bytes.Buffer) {
	f := func(name, value string) { fmt.Fprintf(b, "%s: %s\r\n", name, value) }
	f("Reporting-MTA", "dns; "+r.hostname)
	if r.envid != "" {
		f("Original-Envelope-Id", clean(r.envid))
	}
	f("Arrival-Date", r.arrival.Format(time.RFC1123Z))
	for _, rc := range r.rcpts {
		b.WriteString("\r\n")
		if rc.DSN.Orig != "" {
			typ := rc.DSN.OrigType
			if typ == "" {
				typ = "rfc822"
			}
			f("Original-Recipient", strings.ToLower(typ)+"; "+clean(rc.DSN.Orig))
		}
		f("Final-Recipient", addressType(rc.Address)+"; "+rc.Address)
		action := "failed"
		if r.kind == queue.NoticeDelayed {
			action = "delayed"
		}
		f("Action", action)
		f("Status", dsnStatus(r.kind, rc.LastReply))
		a := accountOf(rc.LastReply, r.history, rc.Address) // ownreply.go
		if a.relay != nil && r.relay != "" {
			f("Remote-MTA", "dns; "+r.relay)
		}
		if d := a.diagnostic(); d != "" {
			f("Diagnostic-Code", d)
		}
		if !rc.LastAttempt.IsZero() {
			f("Last-Attempt-Date", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if r.kind == queue.NoticeDelayed && !r.retryUntil.IsZero() {
			f("Will-Retry-Until", r.retryUntil.Format(time.RFC1123Z))
		}
	}
	b.WriteString("\r\n")
}

// addressType is the address type of Final-Recipient: rfc822, or utf-8
// for an internationalised address (RFC 6533).
func addressType(addr string) string {
	for i := 0; i < len(addr); i++ {
		if addr[i] >= utf8.RuneSelf {
			return "utf-8"
		}
	}
	return "rfc822"
}

// dsnStatus is the Status field (RFC 3463 code). A recipient that ran out
// of time (or that an operator expired) failed with 4.4.7, delivery time
// expired, as Postfix says it, whatever its last reply; any other failed
// recipient has the enhanced code of the reply that killed it (the relay's,
// or the one relayq chose for its own refusal), else one from the reply's
// class. A delay is 4.x.x: the relay's, else 4.0.0.
func dsnStatus(kind queue.NoticeKind, r *queue.Reply) string {
	enhanced, code := "", 0
	if r != nil {
		enhanced, code = r.Enhanced, r.Code
	}
	if kind == queue.NoticeDelayed {
		if strings.HasPrefix(enhanced, "4.") {
			return enhanced
		}
		return "4.0.0"
	}
	switch {
	case isExpired(r): // ownreply.go
		return "4.4.7"
	case enhanced != "":
		return enhanced
	case code/100 == 5:
		return "5.0.0"
	}
	return "4.4.7"
}

// maxFieldText bounds the text of one field, well under the 998 octets a
// line may have.
const maxFieldText = 900

// clean keeps text on one line and within maxFieldText: control characters
// become spaces, so that nothing a relay said can break the notice's
// structure.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxFieldText {
		n := maxFieldText
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}

func crlf(s string) string {
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func newBoundary() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "relayq-report-" + hex.EncodeToString(b[:])
}
