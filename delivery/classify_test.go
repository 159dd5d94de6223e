package delivery

import (
	"errors"
	"io"
	"testing"

	"github.com/emersion/go-smtp"

	"relayq/queue"
	"relayq/transport"
)

func smtpErr(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

func TestClassifyRecipient(t *testing.T) {
	tests := []struct {
		name string
		in   transport.RecipientResult
		want queue.Result
		code int
	}{
		{"accepted", transport.RecipientResult{Reply: "2.0.0 Ok: queued as ABC"}, queue.Delivered, 250},
		{"550 user unknown", transport.RecipientResult{Err: smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "no such user")}, queue.Failed, 550},
		{"451 greylisted", transport.RecipientResult{Err: smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "greylisted")}, queue.Deferred, 451},
		{"552 at RCPT is transient", transport.RecipientResult{Err: smtpErr(552, smtp.EnhancedCode{5, 2, 2}, "mailbox full")}, queue.Deferred, 552},
		{"local error", transport.RecipientResult{Err: io.ErrUnexpectedEOF}, queue.Deferred, 0},
		{"999 is no refusal", transport.RecipientResult{Err: smtpErr(999, smtp.NoEnhancedCode, "foo")}, queue.Deferred, 999},
		{"LMTP reply lost after the dot", transport.RecipientResult{Err: &transport.Error{Stage: transport.StageDot, Err: io.EOF, AfterDot: true}}, queue.Deferred, 0},
		{"relayq's own 5xx refusal of a recipient is final", transport.RecipientResult{Err: &transport.LocalError{Reply: smtpErr(553, smtp.EnhancedCode{5, 1, 3}, "bad address")}}, queue.Failed, 553},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := classifyRecipient(tt.in)
			if v.result != tt.want || v.reply.Code != tt.code {
				t.Fatalf("got %v %+v, want %v code %d", v.result, v.reply, tt.want, tt.code)
			}
		})
	}
}

func TestClassifyTransaction(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		want      queue.Result
		uncertain bool
	}{
		{"connection refused", &transport.Error{Stage: transport.StageDial, Err: errors.New("connection refused")}, queue.Deferred, false},
		{"auth 535 never kills mail", &transport.Error{Stage: transport.StageAuth, Err: smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "bad credentials")}, queue.Deferred, false},
		{"greeting 554 never kills mail", &transport.Error{Stage: transport.StageGreeting, Err: smtpErr(554, smtp.EnhancedCode{5, 0, 0}, "go away")}, queue.Deferred, false},
		{"421 at MAIL", &transport.Error{Stage: transport.StageMail, Err: smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "closing")}, queue.Deferred, false},
		{"sender rejected 553", &transport.Error{Stage: transport.StageMail, Err: smtpErr(553, smtp.EnhancedCode{5, 7, 1}, "sender rejected")}, queue.Failed, false},
		{"DATA 554 content rejected", &transport.Error{Stage: transport.StageDot, Err: smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "spam")}, queue.Failed, false},
		{"DATA 451", &transport.Error{Stage: transport.StageDot, Err: smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "later")}, queue.Deferred, false},
		{"lost after dot", &transport.Error{Stage: transport.StageDot, Err: io.EOF, AfterDot: true}, queue.Deferred, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := classifyTransaction(tt.err)
			if v.result != tt.want || v.uncertain != tt.uncertain {
				t.Fatalf("got %v uncertain=%v (reply %v), want %v uncertain=%v", v.result, v.uncertain, v.reply, tt.want, tt.uncertain)
			}
		})
	}
}

func TestReplyKeepsEveryLineAndEnhancedCode(t *testing.T) {
	r := replyOf(smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "line one\nline two"))
	if r.Code != 550 || r.Enhanced != "5.7.1" || len(r.Lines) != 2 || r.Lines[1] != "line two" {
		t.Fatalf("%+v", r)
	}
	wrapped := replyOf(&transport.Error{Stage: transport.StageDot, Err: smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "try later"), AfterDot: true})
	if wrapped.Lines[0] != "try later" || wrapped.Stage != "dot" || wrapped.String() != "451 4.3.0 try later (in reply to dot)" {
		t.Fatalf("relay text must stay untouched, stage kept apart: %+v %q", wrapped, wrapped.String())
	}
	if s := successReply("2.0.0 Ok: queued as 4XyZ"); s.Enhanced != "2.0.0" || s.Lines[0] != "Ok: queued as 4XyZ" {
		t.Fatalf("%+v", s)
	}
}
