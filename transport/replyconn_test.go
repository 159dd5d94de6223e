package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// chunkConn is a connection the relay's bytes come from in the chunks
// given, one per Read, then io.EOF.
type chunkConn struct {
	net.Conn
	chunks []string
}

func (c *chunkConn) Read(b []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// rawReply is a script list of one step that writes s in place of the reply.
func rawReply(s string) []smtptest.Step { return []smtptest.Step{{Raw: s}} }

// TestReplyConn: a bare code gets its space, whichever way the line is cut
// into reads; nothing else changes; a multi-line reply broken by a line
// that neither continues nor ends it fails the read after the lines before
// it, for good.
func TestReplyConn(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   string
		broken string // the line the error quotes; "" when the reply is not broken
	}{
		{"bare", []string{"250\r\n"}, "250 \r\n", ""},
		{"bare LF", []string{"221\n"}, "221 \n", ""},
		{"bare cut into bytes", []string{"2", "5", "0", "\r", "\n", "3", "54\r", "\n"}, "250 \r\n354 \r\n", ""},
		{"bare continuation and end", []string{"250-\r\n250-8BITMIME\r\n250\r\n"}, "250-\r\n250-8BITMIME\r\n250 \r\n", ""},
		{"with text", []string{"250 2.0.0 ok\r\n220-a\r\n220 b\r\n"}, "250 2.0.0 ok\r\n220-a\r\n220 b\r\n", ""},
		{"not a code", []string{"abc\r\n", "25O\r\n", "000\r\n", "25\r\n", "\r\n"}, "abc\r\n25O\r\n000\r\n25\r\n\r\n", ""},
		{"CR inside", []string{"250\rx\r\n"}, "250\rx\r\n", ""},
		{"long line", []string{"250 " + strings.Repeat("x", 5000) + "\r\n"}, "250 " + strings.Repeat("x", 5000) + "\r\n", ""},
		{"other code ends", []string{"250-ok\r\n999 x\r\n250 more\r\n"}, "250-ok\r\n", `"999 x"`},
		{"other code continues", []string{"250-ok\r\n", "251-x\r\n"}, "250-ok\r\n", `"251-x"`},
		{"no code", []string{"250-ok\r\nabc", "def\r\n"}, "250-ok\r\n", `"abcdef"`},
		{"no separator", []string{"250-ok\r\n250x\r\n"}, "250-ok\r\n", `"250x"`},
		{"long broken line", []string{"250-ok\r\n999 " + strings.Repeat("y", 100)}, "250-ok\r\n", `"999 ` + strings.Repeat("y", 60) + `"`},
		{"cut short by the end", []string{"250-ok\r\n99"}, "250-ok\r\n99", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReplyConn(&chunkConn{chunks: append([]string(nil), tc.chunks...)})
			var got []byte
			var err error
			buf := make([]byte, 3) // small reads: what is held back must come out in order
			for err == nil {
				var n int
				n, err = rc.Read(buf)
				got = append(got, buf[:n]...)
			}
			if string(got) != tc.want {
				t.Errorf("read %q, want %q", got, tc.want)
			}
			var mre *malformedReplyError
			if broken := errors.As(err, &mre); broken != (tc.broken != "") || !broken && err != io.EOF {
				t.Fatalf("err = %v, want malformed %v", err, tc.broken != "")
			}
			if tc.broken != "" {
				if !strings.Contains(err.Error(), "code 250 went on with the line "+tc.broken+",") {
					t.Errorf("err = %v, want it to quote %s", err, tc.broken)
				}
				if n, err2 := rc.Read(buf); n != 0 || err2 != err {
					t.Errorf("read after the broken reply: %d, %v; want the same error again", n, err2)
				}
			}
		})
	}
}

// TestBareReplies: a relay that answers with the code alone (RFC 5321
// §4.2: the text is optional) at any stage gets the message delivered, once,
// and the bare 250 to the final dot counts as delivered, not as a lost
// reply. Before, textproto's "short response" failed the session, and a
// bare 250 to the dot was an unknown outcome: the message went again.
func TestBareReplies(t *testing.T) {
	tests := []struct {
		name   string
		lmtp   bool
		script smtptest.Script
	}{
		{"greeting", false, smtptest.Script{Greeting: rawReply("220\r\n")}},
		{"EHLO", false, smtptest.Script{Hello: rawReply("250\r\n")}},
		{"EHLO multi-line", false, smtptest.Script{Hello: rawReply("250-\r\n250-8BITMIME\r\n250-\r\n250\r\n")}},
		{"MAIL", false, smtptest.Script{Mail: rawReply("250\r\n")}},
		{"RCPT", false, smtptest.Script{Rcpt: map[string][]smtptest.Step{"*": rawReply("250\r\n")}}},
		{"DATA", false, smtptest.Script{Data: rawReply("354\r\n")}},
		{"dot", false, smtptest.Script{Body: rawReply("250\r\n")}},
		{"LHLO", true, smtptest.Script{Hello: rawReply("250\r\n")}},
		{"LMTP dot", true, smtptest.Script{LMTP: map[string][]smtptest.Step{"*": rawReply("250\r\n")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{LMTP: tc.lmtp, Script: tc.script})
			tr := newTransport(t, srv, func(o *Options) { o.LMTP = tc.lmtp })
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			if got := srv.Messages(); len(got) != 1 {
				t.Errorf("relay has %d messages, want 1", len(got))
			}
		})
	}
}

// TestBareRepliesWholeSession: a relay whose every reply is its code alone
// (greeting, EHLO "250-" lines, STARTTLS, AUTH, MAIL, RCPT, DATA, the dot,
// RSET, QUIT), over SMTP and LMTP: two messages on one pooled connection,
// one with a recipient refused by a bare 550, and Verify.
func TestBareRepliesWholeSession(t *testing.T) {
	for _, lmtpOn := range []bool{false, true} {
		name := "SMTP"
		if lmtpOn {
			name = "LMTP"
		}
		t.Run(name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{
				BareReplies: true, LMTP: lmtpOn, TLS: true, Auth: map[string]string{"u": "pw-secret"},
				Script: smtptest.Script{Rcpt: map[string][]smtptest.Step{"gone@example.net": {smtptest.Reply(550, "5.1.1 gone")}}},
			})
			tr := newTransport(t, srv, requireTLS, credentials("u", "pw-secret"), func(o *Options) { o.LMTP = lmtpOn })
			res := mustSend(t, tr, message("s@example.org", "a@example.net"))
			if !strings.Contains(res.Transcript, "S: 250\n") && !strings.Contains(res.Transcript, "S: 250\r\n") {
				t.Errorf("the transcript does not show the bare reply as sent:\n%s", res.Transcript)
			}
			res, err := send(t, tr, message("s@example.org", "gone@example.net", "b@example.net"))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			var se *smtp.SMTPError
			if !errors.As(res.Recipients[0].Err, &se) || se.Code != 550 || res.Recipients[1].Err != nil {
				t.Errorf("results %+v, want 550 for gone@, delivered to b@", res.Recipients)
			}
			if _, err := tr.Verify(context.Background(), &Envelope{From: "s@example.org", To: []string{"c@example.net"}}); err != nil {
				t.Errorf("Verify: %v", err)
			}
			if got := srv.Messages(); len(got) != 2 || srv.Connections() != 2 {
				t.Errorf("relay has %d messages over %d connections, want 2 over 2 (one pooled, one Verify's)", len(got), srv.Connections())
			}
		})
	}
}

// TestBrokenMultilineReplyEndsAtOnce: a multi-line reply broken by a line
// that neither continues nor ends it ("250-ok" then "999 x") ends the
// attempt at once, with every timeout a minute long; after the final dot
// it is an unknown outcome (AfterDot), before it a failed session. Before,
// textproto read on for more lines until the timeout.
func TestBrokenMultilineReplyEndsAtOnce(t *testing.T) {
	tests := []struct {
		name     string
		lmtp     bool
		script   smtptest.Script
		stage    Stage
		afterDot bool
	}{
		{"dot other code", false, smtptest.Script{Body: rawReply("250-ok\r\n999 x\r\n")}, StageDot, true},
		{"dot no code", false, smtptest.Script{Body: rawReply("250-ok\r\nabc\r\n")}, StageDot, true},
		{"dot other code continues", false, smtptest.Script{Body: rawReply("250-ok\r\n550-no\r\n")}, StageDot, true},
		{"LMTP dot", true, smtptest.Script{LMTP: map[string][]smtptest.Step{"*": rawReply("250-ok\r\n451 x\r\n")}}, StageDot, true},
		{"greeting", false, smtptest.Script{Greeting: rawReply("220-hi\r\n554 no\r\n")}, StageGreeting, false},
		{"EHLO", false, smtptest.Script{Hello: rawReply("250-x\r\n250x\r\n")}, StageHello, false},
		{"MAIL", false, smtptest.Script{Mail: rawReply("250-ok\r\n550 x\r\n")}, StageMail, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // without the fix each one waits a minute
			srv := smtptest.NewServer(t, smtptest.Options{LMTP: tc.lmtp, Script: tc.script})
			tr := newTransport(t, srv, func(o *Options) {
				o.LMTP = tc.lmtp
				o.GreetingTimeout, o.CommandTimeout, o.DataTimeout = time.Minute, time.Minute, time.Minute
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			res, err := tr.Send(ctx, message("s@example.org", "r@example.net"))
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("the attempt took %v with timeouts of a minute: it waited for the broken reply to go on", took)
			}
			if tc.lmtp && err == nil {
				err = res.Recipients[0].Err
			}
			te := wantError(t, err, tc.stage, true)
			var mre *malformedReplyError
			if te.AfterDot != tc.afterDot || !errors.As(err, &mre) {
				t.Errorf("err = %v: AfterDot %v, want %v, and a malformed reply", err, te.AfterDot, tc.afterDot)
			}
		})
	}
}

// TestDataAfterSTARTTLSReply: bytes after the relay's 220 to STARTTLS
// (an injection, CVE-2011-0411) fail the session, also when they are only
// the start of a line that replyConn holds back ("250", maybe bare).
func TestDataAfterSTARTTLSReply(t *testing.T) {
	for _, injected := range []string{"250 injected\r\n", "250", "25"} {
		t.Run(strings.TrimSpace(injected), func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Script: smtptest.Script{
				StartTLS: rawReply("220 2.0.0 Ready\r\n" + injected),
			}})
			_, err := send(t, newTransport(t, srv, requireTLS), message("s@example.org", "r@example.net"))
			// "relay sent data after its STARTTLS reply"; or, should the
			// bytes come in a later read, the TLS handshake fails on them.
			wantError(t, err, StageTLS, true)
			if len(srv.Messages()) != 0 {
				t.Errorf("relay has %d messages; want the injection refused", len(srv.Messages()))
			}
		})
	}
}

// repeatConn answers every Read with the same reply.
type repeatConn struct {
	net.Conn
	reply string
}

func (c repeatConn) Read(b []byte) (int, error) { return copy(b, c.reply), nil }

// A reply reader keeps its buffers: once warm, reading a reply (as on a
// pooled connection, three or four a message) allocates nothing.
func TestReplyConnReusesItsBuffer(t *testing.T) {
	rc := newReplyConn(repeatConn{reply: "250 2.0.0 Ok: queued as 1HVQWNNX01HVAQJD8N0V\r\n"})
	buf := make([]byte, 4096)
	rc.Read(buf)
	if n := testing.AllocsPerRun(100, func() { rc.Read(buf) }); n != 0 {
		t.Errorf("a reply read: %v allocations, want 0", n)
	}
}
