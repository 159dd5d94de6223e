package transport

import (
	"errors"
	"io"
	"net/textproto"
	"os"
	"testing"

	"github.com/emersion/go-smtp"
)

func reply(code int) *smtp.SMTPError { return &smtp.SMTPError{Code: code, Message: "text"} }

func TestErrorTemporary(t *testing.T) {
	tests := []struct {
		stage Stage
		err   error
		want  bool
	}{
		{StageDial, errors.New("connection refused"), true},
		{StageGreeting, reply(554), true},
		{StageTLS, errors.New("x509: certificate signed by unknown authority"), true},
		{StageHello, reply(550), true},
		{StageAuth, reply(535), true},
		{StageMail, reply(553), false},
		{StageMail, reply(451), true},
		{StageMail, localError(552, smtp.EnhancedCode{5, 3, 4}, "too big"), false},
		{StageRcpt, reply(421), true},
		{StageData, reply(554), false},
		{StageData, io.ErrUnexpectedEOF, true},
		{StageDot, reply(550), false},
		{StageDot, os.ErrDeadlineExceeded, true},
	}
	for _, tc := range tests {
		if got := (&Error{Stage: tc.stage, Err: tc.err}).Temporary(); got != tc.want {
			t.Errorf("%v %v: Temporary() = %v, want %v", tc.stage, tc.err, got, tc.want)
		}
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Stage: StageDot, Err: os.ErrDeadlineExceeded, AfterDot: true}
	if got, want := e.Error(), "transport: dot: i/o timeout"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, os.ErrDeadlineExceeded) {
		t.Errorf("Error does not unwrap to its cause")
	}
	le := localError(553, smtp.EnhancedCode{5, 1, 3}, "invalid recipient address")
	var se *smtp.SMTPError
	if !errors.As(&Error{Stage: StageMail, Err: le}, &se) || se.Code != 553 {
		t.Errorf("LocalError does not unwrap to its reply")
	}
	if Stage(99).String() != "stage(99)" {
		t.Errorf("unknown stage prints as %q", Stage(99).String())
	}
}

func TestToSMTPError(t *testing.T) {
	tests := []struct {
		in       textproto.Error
		enhanced smtp.EnhancedCode
		msg      string
	}{
		{textproto.Error{Code: 421, Msg: "4.3.2 Shutting down"}, smtp.EnhancedCode{4, 3, 2}, "Shutting down"},
		{textproto.Error{Code: 554, Msg: "5.7.1 Go away\n5.7.1 Really"}, smtp.EnhancedCode{5, 7, 1}, "Go away\nReally"},
		{textproto.Error{Code: 554, Msg: "No enhanced code"}, smtp.EnhancedCode{}, "No enhanced code"},
		{textproto.Error{Code: 554, Msg: "5.7 not one"}, smtp.EnhancedCode{}, "5.7 not one"},
		{textproto.Error{Code: 421, Msg: "bye"}, smtp.EnhancedCode{}, "bye"},
	}
	for _, tc := range tests {
		got := toSMTPError(&tc.in)
		if got.Code != tc.in.Code || got.EnhancedCode != tc.enhanced || got.Message != tc.msg {
			t.Errorf("toSMTPError(%q) = %d %v %q, want %d %v %q", tc.in.Msg, got.Code, got.EnhancedCode, got.Message, tc.in.Code, tc.enhanced, tc.msg)
		}
	}
}

func TestHasExtension(t *testing.T) {
	reply := "250-relay.example greets you\r\n250-PIPELINING\r\n250-starttls\r\n250 SIZE 1000\r\n"
	for kw, want := range map[string]bool{"STARTTLS": true, "SIZE": true, "AUTH": false, "relay.example": false} {
		if got := hasExtension(reply, kw); got != want {
			t.Errorf("hasExtension(%q) = %v, want %v", kw, got, want)
		}
	}
	if hasExtension("250 STARTTLS\r\n", "STARTTLS") {
		t.Errorf("the first line (the relay's name) counted as an extension")
	}
}

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		addr   string
		sender bool
		ok     bool
	}{
		{"user@example.org", false, true},
		{"rené@exämple.org", false, true},
		{"postmaster", false, true},
		{"", true, true},
		{"", false, false},
		{"a@b> SIZE=1", false, false},
		{"<a@b>", true, false},
		{"a b@c", false, false},
		{"a@b\r\nRSET", false, false},
		{"a@b\x00", false, false},
		{"a@b\x7f", false, false},
		{"a\tb@c", false, false},
	}
	for _, tc := range tests {
		if err := checkAddress(tc.addr, tc.sender); (err == nil) != tc.ok {
			t.Errorf("checkAddress(%q, sender=%v) = %v, want ok=%v", tc.addr, tc.sender, err, tc.ok)
		}
	}
}

func TestLoginClient(t *testing.T) {
	c := &loginClient{user: "alice", pass: "pw"}
	mech, ir, err := c.Start()
	if mech != "LOGIN" || ir != nil || err != nil {
		t.Fatalf("Start() = %q, %q, %v", mech, ir, err)
	}
	// The challenges' text does not matter, only their order.
	for _, step := range []struct{ challenge, want string }{{"User Name", "alice"}, {"Password:", "pw"}} {
		got, err := c.Next([]byte(step.challenge))
		if err != nil || string(got) != step.want {
			t.Errorf("Next(%q) = %q, %v; want %q", step.challenge, got, err, step.want)
		}
	}
	if _, err := c.Next([]byte("again?")); err == nil {
		t.Errorf("a third challenge was answered")
	}
}
