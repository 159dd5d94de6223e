package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

func TestRecipientRefused(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"B@example.net": {smtptest.Reply(550, "5.1.1 No such user here")}},
	}})
	tr := newTransport(t, srv)
	res, err := send(t, tr, message("s@example.org", "a@example.net", "b@example.net", "c@example.net"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	for _, r := range res.Recipients {
		if r.Address == "b@example.net" {
			var se *smtp.SMTPError
			if !errors.As(r.Err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || se.Message != "No such user here" {
				t.Errorf("b: err = %#v, want the relay's 550 5.1.1 No such user here", r.Err)
			}
		} else if r.Err != nil || r.Reply == "" {
			t.Errorf("%s: err = %v, reply %q; want accepted", r.Address, r.Err, r.Reply)
		}
	}
	if got := srv.WaitMessages(t, 1, time.Second)[0]; !slices.Equal(got.To, []string{"a@example.net", "c@example.net"}) {
		t.Errorf("delivered to %q, want a and c", got.To)
	}
}

// TestAllRecipientsRefused: every recipient refused at RCPT is each one's
// refusal, not a failed transaction, and no message is sent. Without
// PIPELINING, DATA is not sent at all; with it, DATA went with the RCPTs
// and the relay refused it. Either way RSET keeps the connection for the
// next message.
func TestAllRecipientsRefused(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		opts := smtptest.Options{Script: smtptest.Script{
			Rcpt: map[string][]smtptest.Step{"*": smtptest.Times(2, smtptest.Reply(550, "5.7.1 Relaying denied"))},
		}}
		if !pipelining {
			opts.Without = []string{"PIPELINING"}
		}
		srv := smtptest.NewServer(t, opts)
		tr := newTransport(t, srv)
		res, err := send(t, tr, message("s@example.org", "a@example.net", "b@example.net"))
		if err != nil {
			t.Fatalf("pipelining %v: Send: %v", pipelining, err)
		}
		for _, r := range res.Recipients {
			var se *smtp.SMTPError
			if !errors.As(r.Err, &se) || se.Code != 550 {
				t.Errorf("pipelining %v: %s: err = %v, want 550", pipelining, r.Address, r.Err)
			}
		}
		if want := map[bool]int{false: 0, true: 1}[pipelining]; srv.DataAttempts() != want {
			t.Errorf("pipelining %v: %d DATA commands, want %d", pipelining, srv.DataAttempts(), want)
		}
		// The RSET left the connection usable.
		mustSend(t, tr, message("s@example.org", "c@example.net"))
		if n := len(srv.Messages()); n != 1 {
			t.Errorf("pipelining %v: %d messages taken, want only the second", pipelining, n)
		}
		if srv.Connections() != 1 || !slices.Contains(srv.Commands(), "RSET") {
			t.Errorf("pipelining %v: %d connections, commands %q; want one connection, RSET after the refusal", pipelining, srv.Connections(), srv.Commands())
		}
	}
}

// TestReplyClassification covers a refusal at each step of the
// transaction: the stage it is reported at and whether it is temporary.
func TestReplyClassification(t *testing.T) {
	tests := []struct {
		name      string
		script    smtptest.Script
		stage     Stage
		temporary bool
		code      int
	}{
		{"greeting 421", smtptest.Script{Greeting: []smtptest.Step{smtptest.Reply(421, "4.3.2 Shutting down")}}, StageGreeting, true, 421},
		{"greeting 554 is still temporary", smtptest.Script{Greeting: []smtptest.Step{smtptest.Reply(554, "5.3.2 Go away")}}, StageGreeting, true, 554},
		{"EHLO 421", smtptest.Script{Hello: []smtptest.Step{smtptest.Reply(421, "4.3.2 Bye")}}, StageHello, true, 421},
		{"MAIL 451", smtptest.Script{Mail: []smtptest.Step{smtptest.Reply(451, "4.3.0 Try later")}}, StageMail, true, 451},
		{"MAIL 553", smtptest.Script{Mail: []smtptest.Step{smtptest.Reply(553, "5.7.1 Sender rejected")}}, StageMail, false, 553},
		{"MAIL 421", smtptest.Script{Mail: []smtptest.Step{smtptest.Reply(421, "4.4.2 Timeout")}}, StageMail, true, 421},
		{"RCPT 421", smtptest.Script{Rcpt: map[string][]smtptest.Step{"*": {smtptest.Reply(421, "4.3.2 Bye")}}}, StageRcpt, true, 421},
		{"DATA 451", smtptest.Script{Data: []smtptest.Step{smtptest.Reply(451, "4.3.0 Local error")}}, StageData, true, 451},
		{"DATA 554", smtptest.Script{Data: []smtptest.Step{smtptest.Reply(554, "5.5.1 No valid recipients")}}, StageData, false, 554},
		{"after the dot 451", smtptest.Script{Body: []smtptest.Step{smtptest.Reply(451, "4.7.1 Greylisted")}}, StageDot, true, 451},
		{"after the dot 554", smtptest.Script{Body: []smtptest.Step{smtptest.Reply(554, "5.7.1 Spam")}}, StageDot, false, 554},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{Script: tc.script})
			tr := newTransport(t, srv)
			res, err := send(t, tr, message("s@example.org", "r@example.net"))
			if res != nil {
				t.Errorf("Result %+v returned with an error", res)
			}
			te := wantError(t, err, tc.stage, tc.temporary)
			var se *smtp.SMTPError
			if !errors.As(te, &se) || se.Code != tc.code || te.AfterDot {
				t.Errorf("err = %v (AfterDot %v), want the relay's %d", err, te.AfterDot, tc.code)
			}
			if len(srv.Messages()) != 0 {
				t.Errorf("relay accepted a message")
			}
		})
	}
}

func TestConnectionFaults(t *testing.T) {
	// Dropping mid-body is only seen as such while the client is still
	// writing; a body shorter than the socket buffers is all written
	// before the drop, and that is indistinguishable from a drop after
	// the dot. Loopback's buffers grow to about 10 MiB (tcp_wmem and
	// tcp_rmem autotuning; 1 MiB went in whole once the body was written
	// in 32 KiB writes), so that case sends 32 MiB.
	line := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n")
	big := bytes.Repeat(line, 1<<14)  // 1 MiB
	huge := bytes.Repeat(line, 1<<19) // 32 MiB
	tests := []struct {
		name     string
		script   smtptest.Script
		stage    Stage
		afterDot bool
		body     []byte // nil: big
	}{
		{"no greeting", smtptest.Script{Greeting: []smtptest.Step{{Fault: smtptest.Hang}}}, StageGreeting, false, nil},
		{"dropped at greeting", smtptest.Script{Greeting: []smtptest.Step{{Fault: smtptest.Drop}}}, StageGreeting, false, nil},
		{"dropped at RCPT", smtptest.Script{Rcpt: map[string][]smtptest.Step{"*": {{Fault: smtptest.Drop}}}}, StageRcpt, false, nil},
		{"dropped mid-body", smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Drop, AfterBytes: 20}}}, StageData, false, huge},
		{"dropped after the dot", smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Drop}}}, StageDot, true, nil},
		{"no reply after the dot", smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Hang}}}, StageDot, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{Script: tc.script})
			tr := newTransport(t, srv, func(o *Options) {
				o.GreetingTimeout, o.DataTimeout = 100*time.Millisecond, 100*time.Millisecond
			})
			m := message("s@example.org", "r@example.net")
			body := big
			if tc.body != nil {
				body = tc.body
			}
			m.Body, m.Size = bytes.NewReader(body), int64(len(body))
			_, err := send(t, tr, m)
			te := wantError(t, err, tc.stage, true)
			if te.AfterDot != tc.afterDot {
				t.Errorf("AfterDot = %v, want %v (%v)", te.AfterDot, tc.afterDot, err)
			}
			// The relay recovers (the script is used up): the next Send
			// goes through on a new connection.
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			if n := len(srv.Messages()); n != 1 {
				t.Errorf("relay has %d messages, want 1", n)
			}
		})
	}
}

// TestBodyStall: a relay that stops reading mid-body (its TCP window
// fills) is given up on after DataTimeout, before the dot.
func TestBodyStall(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Body: []smtptest.Step{{Fault: smtptest.Hang, AfterBytes: 1}},
	}})
	tr := newTransport(t, srv, func(o *Options) {
		o.DataTimeout = 200 * time.Millisecond
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.(*net.TCPConn).SetWriteBuffer(16 << 10)
			}
			return c, err
		}
	})
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 1<<16) // 4 MiB
	start := time.Now()
	_, err := send(t, tr, &Message{From: "s@example.org", Recipients: []string{"r@example.net"}, Body: bytes.NewReader(body), Size: int64(len(body))})
	te := wantError(t, err, StageData, true)
	if te.AfterDot || !errors.Is(te, os.ErrDeadlineExceeded) {
		t.Errorf("err = %v (AfterDot %v), want a write timeout before the dot", err, te.AfterDot)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("gave up after %v, want about DataTimeout", d)
	}
}

func TestContextCancel(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Hang}}}})
	tr := newTransport(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := tr.Send(ctx, message("s@example.org", "r@example.net"))
	te := wantError(t, err, StageDot, true)
	if !errors.Is(err, context.DeadlineExceeded) || !te.AfterDot {
		t.Errorf("err = %v (AfterDot %v), want the context's error after the dot", err, te.AfterDot)
	}
}

func TestRelayLimits(t *testing.T) {
	big := message("s@example.org", "r@example.net")
	big.Size = 1000
	utf8 := message("s@example.org", "rené@example.net")
	utf8.UTF8 = true
	eight := message("s@example.org", "r@example.net")
	eight.EightBit = true
	tests := []struct {
		name     string
		srv      smtptest.Options
		msg      *Message
		code     int // 0: delivered
		param    string
		enhanced smtp.EnhancedCode
	}{
		{"over SIZE", smtptest.Options{MaxSize: 200}, big, 552, "", smtp.EnhancedCode{5, 3, 4}},
		{"SMTPUTF8 missing", smtptest.Options{}, utf8, 553, "", smtp.EnhancedCode{5, 6, 7}},
		{"SMTPUTF8", smtptest.Options{SMTPUTF8: true}, utf8, 0, "SMTPUTF8", smtp.EnhancedCode{}},
		{"8BITMIME missing", smtptest.Options{Without: []string{"8BITMIME"}}, eight, 554, "", smtp.EnhancedCode{5, 6, 3}},
		{"8BITMIME", smtptest.Options{}, eight, 0, "BODY=8BITMIME", smtp.EnhancedCode{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tc.srv)
			tr := newTransport(t, srv)
			_, err := send(t, tr, tc.msg)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if got := srv.WaitMessages(t, 1, time.Second)[0]; !slices.Contains(got.MailParams, tc.param) {
					t.Errorf("MAIL parameters %q lack %s", got.MailParams, tc.param)
				}
				return
			}
			te := wantError(t, err, StageMail, false)
			var le *LocalError
			if !errors.As(te, &le) || le.Reply.Code != tc.code || le.Reply.EnhancedCode != tc.enhanced {
				t.Errorf("err = %v, want a local %d %v", err, tc.code, tc.enhanced)
			}
			if slices.ContainsFunc(srv.Commands(), func(c string) bool { return len(c) > 4 && c[:4] == "MAIL" }) {
				t.Errorf("MAIL sent for a message the relay cannot take")
			}
			// Nothing was sent: the connection serves the next message.
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			if srv.Connections() != 1 {
				t.Errorf("%d connections, want 1", srv.Connections())
			}
		})
	}
}

func TestInvalidAddresses(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv)
	for _, from := range []string{"a@b> SIZE=1", "a@b\r\nRSET", "a b@c", "<a@b>"} {
		_, err := send(t, tr, message(from, "r@example.net"))
		te := wantError(t, err, StageMail, false)
		var le *LocalError
		if !errors.As(te, &le) {
			t.Errorf("From %q: err = %v, want a *LocalError", from, err)
		}
	}
	if srv.Connections() != 0 {
		t.Errorf("connected to the relay for an invalid sender")
	}
	res, err := send(t, tr, message("", "ok@example.net", "x@y\r\nRSET", "", "ok@example.net"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	for i, wantOK := range []bool{true, false, false, true} {
		r := res.Recipients[i]
		var le *LocalError
		if wantOK != (r.Err == nil) || (!wantOK && (!errors.As(r.Err, &le) || le.Reply.Code != 553)) {
			t.Errorf("recipient %q: err = %v, want ok=%v", r.Address, r.Err, wantOK)
		}
	}
	got := srv.WaitMessages(t, 1, time.Second)[0]
	if got.From != "" || !slices.Equal(got.To, []string{"ok@example.net"}) {
		t.Errorf("envelope %q → %q, want the null sender to ok@example.net once", got.From, got.To)
	}
}
