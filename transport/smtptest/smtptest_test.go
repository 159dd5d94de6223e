package smtptest

import (
	"bytes"
	"encoding/base64"
	"io"
	"net"
	"net/textproto"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialog plays lines against srv: "C: …" is sent, "S: …" is a prefix the
// next reply line must have, "S= …" the whole of it, "S: <closed>" expects
// the server to hang up.
func dialog(t *testing.T, srv *Server, lines ...string) {
	t.Helper()
	nc, err := net.Dial(srv.Network(), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	c := textproto.NewConn(nc)
	for _, l := range lines {
		dir, text, _ := strings.Cut(l, ": ")
		whole, exact := strings.CutPrefix(l, "S= ")
		if dir == "C" {
			if err := c.PrintfLine("%s", text); err != nil {
				t.Fatalf("send %q: %v", text, err)
			}
			continue
		}
		got, err := c.ReadLine()
		if text == "<closed>" {
			if err != io.EOF {
				t.Fatalf("got %q, %v; want the connection closed", got, err)
			}
			return
		}
		if exact && (err != nil || got != whole) {
			t.Fatalf("got %q, %v; want exactly %q", got, err, whole)
		}
		if !exact && (err != nil || !strings.HasPrefix(got, text)) {
			t.Fatalf("got %q, %v; want %q…", got, err, text)
		}
	}
}

func TestDialogSMTP(t *testing.T) {
	srv := NewServer(t, Options{MaxSize: 100, Without: []string{"8BITMIME"}, Domain: "relay.test"})
	dialog(t, srv,
		"S: 220 relay.test ESMTP",
		"C: MAIL FROM:<s@example.org>",
		"S: 503 5.5.1",
		"C: EHLO client.test",
		"S: 250-relay.test greets client.test",
		"S: 250-PIPELINING",
		"S: 250-ENHANCEDSTATUSCODES",
		"S: 250 SIZE 100",
		"C: MAIL FROM:<s@example.org> SIZE=1000",
		"S: 552 5.3.4",
		"C: MAIL FROM:<s@example.org> BODY=8BITMIME",
		"S: 555 5.5.4",
		"C: DATA",
		"S: 503 5.5.1",
		"C: MAIL FROM:<s@example.org> SIZE=10",
		"S: 250 2.1.0",
		"C: RCPT TO:<r@example.net>",
		"S: 250 2.1.5",
		"C: DATA",
		"S: 354 ",
		"C: a",
		"C: ..x",
		"C: .",
		"S: 250 2.0.0 Ok: queued as C1M1",
		"C: QUIT",
		"S: 221 2.0.0",
	)
	got := srv.Messages()
	if len(got) != 1 || string(got[0].Body) != "a\r\n.x\r\n" || got[0].From != "s@example.org" ||
		!slices.Equal(got[0].MailParams, []string{"SIZE=10"}) || got[0].Hello != "client.test" {
		t.Errorf("recorded %+v", got)
	}
	if srv.DataAttempts() != 2 || srv.Connections() != 1 {
		t.Errorf("%d DATA, %d connections; want 2 and 1", srv.DataAttempts(), srv.Connections())
	}
}

func TestDialogAuth(t *testing.T) {
	srv := NewServer(t, Options{Auth: map[string]string{"alice": "pw"}, AuthMechanisms: []string{"login"}})
	dialog(t, srv,
		"S: 220 ",
		"C: EHLO c",
		"S: 250-", "S: 250-", "S: 250-", "S: 250-", "S: 250-", "S: 250 AUTH LOGIN",
		"C: AUTH PLAIN "+b64("\x00alice\x00pw"),
		"S: 504 5.5.4",
		"C: AUTH LOGIN",
		"S: 334 VXNlcm5hbWU6",
		"C: "+b64("alice"),
		"S: 334 UGFzc3dvcmQ6",
		"C: "+b64("wrong"),
		"S: 535 5.7.8",
		"C: AUTH LOGIN "+b64("alice"),
		"S: 334 UGFzc3dvcmQ6",
		"C: "+b64("pw"),
		"S: 235 2.7.0",
		"C: AUTH LOGIN",
		"S: 503 5.5.1",
	)
	if !bytes.Contains(srv.Wire(), []byte(b64("pw"))) {
		t.Errorf("Wire() lacks what the client sent")
	}
}

func TestDialogScript(t *testing.T) {
	srv := NewServer(t, Options{Script: Script{
		Rcpt: map[string][]Step{"*": Times(2, Reply(450, "4.2.1 Busy")), "VIP@example.net": {Reply(550, "")}},
		Data: []Step{Reply(451, "4.3.0 Not now")},
	}})
	dialog(t, srv,
		"S: 220 ",
		"C: HELO c",
		"S: 250 ",
		"C: MAIL FROM:<>",
		"S: 250 ",
		"C: RCPT TO:<a@example.net>",
		"S: 450 4.2.1 Busy",
		"C: RCPT TO:<vip@example.net>",
		"S: 550 5.0.0 Permanent failure (scripted)",
		"C: RCPT TO:<b@example.net>",
		"S: 450 4.2.1 Busy",
		"C: RCPT TO:<c@example.net>",
		"S: 250 ",
		"C: DATA",
		"S: 451 4.3.0 Not now",
		"C: RSET",
		"S: 250 ",
	)
	srv.SetScript(Script{Mail: []Step{Reply(421, "4.3.2 Going down")}})
	dialog(t, srv,
		"S: 220 ",
		"C: EHLO c",
		"S: 250-", "S: 250-", "S: 250-", "S: 250-", "S: 250 SIZE",
		"C: MAIL FROM:<s@example.org>",
		"S: 421 4.3.2 Going down",
		"S: <closed>",
	)
	srv.SetScript(Script{Greeting: []Step{{Fault: Drop}}})
	dialog(t, srv, "S: <closed>")
}

// TestDialogMaxMails: after MaxMails messages on a connection, MAIL gets
// 452 4.5.3 and the session stays open; a new connection starts again.
func TestDialogMaxMails(t *testing.T) {
	srv := NewServer(t, Options{MaxMails: 1})
	session := []string{
		"S: 220 ",
		"C: HELO c",
		"S: 250 ",
		"C: MAIL FROM:<s@example.org>",
		"S: 250 ",
		"C: RCPT TO:<r@example.net>",
		"S: 250 ",
		"C: DATA",
		"S: 354 ",
		"C: x",
		"C: .",
		"S: 250 ",
		"C: MAIL FROM:<s@example.org>",
		"S= 452 4.5.3 Too many recipients: Too many messages sent",
		"C: NOOP",
		"S: 250 ",
	}
	dialog(t, srv, session...)
	dialog(t, srv, session...)
	if n := len(srv.Messages()); n != 2 {
		t.Errorf("%d messages, want one per connection", n)
	}
}

// TestDialogRaw: a Raw step replaces the reply with its bytes as they are,
// and the session goes on.
func TestDialogRaw(t *testing.T) {
	srv := NewServer(t, Options{Script: Script{
		Greeting: []Step{{Raw: "garbage without a code\r\n"}},
		Mail:     []Step{{Raw: "2x0 what\r\n"}},
	}})
	dialog(t, srv,
		"S: garbage without a code",
		"C: HELO c",
		"S: 250 ",
		"C: MAIL FROM:<>",
		"S: 2x0 what",
		"C: QUIT",
		"S: 221 ",
	)
}

// TestDialogBareReplies: with BareReplies every reply line is its code
// alone, each line exactly, the EHLO keywords and AUTH challenges kept.
func TestDialogBareReplies(t *testing.T) {
	srv := NewServer(t, Options{BareReplies: true, Auth: map[string]string{"u": "p"}, AuthMechanisms: []string{"LOGIN"}})
	dialog(t, srv,
		"S= 220", "C: EHLO c", "S= 250-", "S= 250-PIPELINING", "S= 250-8BITMIME",
		"S= 250-ENHANCEDSTATUSCODES", "S= 250-SIZE", "S= 250-AUTH LOGIN", "S= 250",
		"C: AUTH LOGIN", "S= 334 VXNlcm5hbWU6", "C: "+base64.StdEncoding.EncodeToString([]byte("u")),
		"S= 334 UGFzc3dvcmQ6", "C: "+base64.StdEncoding.EncodeToString([]byte("p")), "S= 235",
		"C: MAIL FROM:<s@example.org>", "S= 250", "C: RCPT TO:<r@example.net>", "S= 250",
		"C: DATA", "S= 354", "C: hi", "C: .", "S= 250", "C: NOOP", "S= 250", "C: QUIT", "S= 221",
	)
	srv.WaitMessages(t, 1, time.Second)
}

func TestDialogLMTP(t *testing.T) {
	srv := NewServer(t, Options{LMTP: true, Unix: true, Script: Script{
		LMTP: map[string][]Step{"b@example.net": {Reply(452, "4.2.2 Full")}},
	}})
	dialog(t, srv,
		"S: 220 smtptest.localhost LMTP",
		"C: EHLO c",
		"S: 500 5.5.1",
		"C: LHLO c",
		"S: 250-", "S: 250-", "S: 250-", "S: 250-", "S: 250 SIZE",
		"C: MAIL FROM:<s@example.org>",
		"S: 250 ",
		"C: RCPT TO:<a@example.net>",
		"S: 250 ",
		"C: RCPT TO:<b@example.net>",
		"S: 250 ",
		"C: DATA",
		"S: 354 ",
		"C: hello",
		"C: .",
		"S: 250 2.1.5 <a@example.net>",
		"S: 452 4.2.2 Full",
	)
	got := srv.WaitMessages(t, 1, time.Second)
	if !slices.Equal(got[0].To, []string{"a@example.net"}) {
		t.Errorf("delivered to %q, want a only", got[0].To)
	}
}

func TestStartTLSDiscardsEarlyInput(t *testing.T) {
	srv := NewServer(t, Options{TLS: true})
	if srv.CertPool() == nil || srv.Certificate() == nil {
		t.Fatal("no certificate with TLS")
	}
	// A command pipelined after STARTTLS must not be executed.
	dialog(t, srv,
		"S: 220 ",
		"C: EHLO c",
		"S: 250-", "S: 250-", "S: 250-", "S: 250-", "S: 250-", "S: 250 STARTTLS",
		"C: STARTTLS\r\nMAIL FROM:<injected@example.org>",
		"S: 220 2.0.0",
	)
	if slices.Contains(srv.Commands(), "MAIL FROM:<injected@example.org>") {
		t.Errorf("a command sent before the TLS handshake was executed")
	}
}

func TestWaitMessagesTimeout(t *testing.T) {
	srv := NewServer(t, Options{})
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.WaitMessages(ft, 1, 10*time.Millisecond)
	}()
	<-done
	if !ft.failed {
		t.Errorf("WaitMessages returned without failing the test")
	}
}

// fatalRecorder records Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	runtime.Goexit()
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestOnData: the hook sees each message at its final dot, and again after
// a 2xx reply was written; a refused message only at its final dot.
func TestOnData(t *testing.T) {
	type event struct {
		at  DataPoint
		msg string
	}
	var mu sync.Mutex
	var events []event
	srv := NewServer(t, Options{
		Script: Script{Body: []Step{{}, Reply(554, "5.7.1 No")}},
		OnData: func(at DataPoint, msg []byte) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, event{at, string(msg)})
		},
	})
	dialog(t, srv,
		"S: 220",
		"C: HELO client.test", "S: 250",
		"C: MAIL FROM:<s@example.org>", "S: 250",
		"C: RCPT TO:<r@example.net>", "S: 250",
		"C: DATA", "S: 354",
		"C: first", "C: .", "S: 250",
		"C: MAIL FROM:<s@example.org>", "S: 250",
		"C: RCPT TO:<r@example.net>", "S: 250",
		"C: DATA", "S: 354",
		"C: second", "C: .", "S: 554",
		"C: QUIT", "S: 221",
	)
	mu.Lock()
	defer mu.Unlock()
	want := []event{{DataRead, "first\r\n"}, {DataAccepted, "first\r\n"}, {DataRead, "second\r\n"}}
	if !slices.Equal(events, want) {
		t.Errorf("OnData saw %v, want %v", events, want)
	}
}
