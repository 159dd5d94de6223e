package transport

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// TestPipelinedSameAsUnpipelined: a relay that offers PIPELINING gets
// MAIL, RCPT and DATA in one write and the body with its dot in another,
// and otherwise exactly what a relay without it gets: the same command
// lines (go-smtp's, with DSN, SMTPUTF8, SIZE and BODY parameters), the
// same message, and Send reports the same outcome, per recipient and per
// stage, for refusals at each step. Where MAIL or every RCPT is refused,
// the pipelined DATA is refused too and no message is taken.
func TestPipelinedSameAsUnpipelined(t *testing.T) {
	utf8Body := []byte("Subject: caf\xc3\xa9\r\n\r\n.d\xc3\xa9j\xc3\xa0\r\n")
	tests := []struct {
		name   string
		opts   smtptest.Options
		msg    func() *Message
		sameIO bool // the relay sees the same commands both ways
	}{
		{"plain", smtptest.Options{}, func() *Message { return message("a@example.org", "b@example.net") }, true},
		{"three recipients, one refused, one twice", smtptest.Options{Script: smtptest.Script{
			Rcpt: map[string][]smtptest.Step{"c@example.net": {smtptest.Reply(550, "5.1.1 No such user here")}},
		}}, func() *Message {
			return message("a@example.org", "b@example.net", "c@example.net", "d@example.net", "b@example.net")
		}, true},
		{"8-bit body, SMTPUTF8, DSN", smtptest.Options{SMTPUTF8: true, DSN: true}, func() *Message {
			m := message("a@example.org", "b@example.net", "c@example.net")
			m.Body, m.Size, m.EightBit, m.UTF8 = bytes.NewReader(utf8Body), int64(len(utf8Body)), true, true
			m.DSN = DSN{Return: "HDRS", EnvelopeID: "id+1 x"}
			m.RecipientDSN = []RecipientDSN{
				{Notify: []string{"SUCCESS", "FAILURE"}, OrigType: "RFC822", Orig: "b+x@example.net"},
				{Notify: []string{"NEVER"}, OrigType: "UTF-8", Orig: "j\xc3\xa9@example.net"},
			}
			return m
		}, true},
		{"7-bit body, relay offers 8BITMIME", smtptest.Options{}, func() *Message {
			return message("", "b@example.net")
		}, true},
		{"empty body", smtptest.Options{}, func() *Message {
			m := message("a@example.org", "b@example.net")
			m.Body, m.Size = bytes.NewReader(nil), 0
			return m
		}, true},
		{"DATA refused", smtptest.Options{Script: smtptest.Script{Data: []smtptest.Step{smtptest.Reply(451, "4.3.0 Try later")}}},
			func() *Message { return message("a@example.org", "b@example.net") }, true},
		{"dot refused", smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{smtptest.Reply(554, "5.6.0 Content rejected")}}},
			func() *Message { return message("a@example.org", "b@example.net") }, true},
		{"DATA 421", smtptest.Options{Script: smtptest.Script{Data: []smtptest.Step{smtptest.Reply(421, "4.3.2 Bye")}}},
			func() *Message { return message("a@example.org", "b@example.net") }, true},
		{"MAIL refused", smtptest.Options{Script: smtptest.Script{Mail: []smtptest.Step{smtptest.Reply(553, "5.1.8 Bad sender")}}},
			func() *Message { return message("a@example.org", "b@example.net") }, false},
		{"every recipient refused", smtptest.Options{Script: smtptest.Script{
			Rcpt: map[string][]smtptest.Step{"*": smtptest.Times(2, smtptest.Reply(550, "5.7.1 Relaying denied"))},
		}}, func() *Message { return message("a@example.org", "b@example.net", "c@example.net") }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := func(pipelining bool) (outcome string, commands []string, got []smtptest.Received, transcript string) {
				opts := tc.opts
				if !pipelining {
					opts.Without = append(slices.Clone(opts.Without), "PIPELINING")
				}
				srv := smtptest.NewServer(t, opts)
				tr := newTransport(t, srv)
				res, err := send(t, tr, tc.msg())
				outcome, transcript = describe(res, err)
				// The session is in step: the next message goes through
				// (on the same connection unless it was dropped).
				next, nextErr := send(t, tr, message("n@example.org", "n@example.net"))
				nextOutcome, _ := describe(next, nextErr)
				return outcome + "\nnext: " + nextOutcome, srv.Commands(), srv.Messages(), transcript
			}
			plain, plainCmds, plainMsgs, _ := run(false)
			piped, pipedCmds, pipedMsgs, transcript := run(true)
			if piped != plain {
				t.Errorf("outcome\npipelined:   %s\nunpipelined: %s", piped, plain)
			}
			if tc.sameIO && !slices.Equal(pipedCmds, plainCmds) {
				t.Errorf("commands\npipelined:   %q\nunpipelined: %q", pipedCmds, plainCmds)
			}
			if len(pipedMsgs) != len(plainMsgs) {
				t.Fatalf("%d messages pipelined, %d unpipelined", len(pipedMsgs), len(plainMsgs))
			}
			for i := range pipedMsgs {
				p, u := pipedMsgs[i], plainMsgs[i]
				if p.From != u.From || !slices.Equal(p.To, u.To) || !bytes.Equal(p.Body, u.Body) ||
					!slices.Equal(p.MailParams, u.MailParams) || fmt.Sprint(p.RcptParams) != fmt.Sprint(u.RcptParams) {
					t.Errorf("message %d\npipelined:   %+v\nunpipelined: %+v", i, p, u)
				}
			}
			// It was pipelined: every command before the first reply to MAIL.
			lines := strings.Split(transcript, "\n")
			mail := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "C: MAIL ") })
			data := slices.Index(lines, "C: DATA")
			if mail < 0 || data < 0 || slices.ContainsFunc(lines[mail:data], func(l string) bool { return strings.HasPrefix(l, "S: ") }) {
				t.Errorf("not pipelined:\n%s", transcript)
			}
		})
	}
}

// describe is what a test compares of a Send's outcome: the stage and
// reply of a failure, or each recipient's reply or refusal.
func describe(res *Result, err error) (string, string) {
	if err != nil {
		var te *Error
		if !errors.As(err, &te) {
			return "error " + err.Error(), ""
		}
		return fmt.Sprintf("error at %v, temporary %v, after dot %v: %s", te.Stage, te.Temporary(), te.AfterDot, replyOf(te.Err)), te.Transcript
	}
	var b strings.Builder
	for _, r := range res.Recipients {
		if r.Err != nil {
			fmt.Fprintf(&b, "%s: refused %s; ", r.Address, replyOf(r.Err))
		} else {
			fmt.Fprintf(&b, "%s: %q; ", r.Address, r.Reply)
		}
	}
	return b.String(), res.Transcript
}

func replyOf(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %v %q", se.Code, se.EnhancedCode, se.Message)
	}
	return fmt.Sprintf("%T", err)
}
