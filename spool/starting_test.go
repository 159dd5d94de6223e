package spool

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// startStarting runs a Server without a queue, as the daemon does while
// its queue opens, on a temp socket and 127.0.0.1:0.
func startStarting(t *testing.T) *Server {
	t.Helper()
	return runServer(t, Options{Socket: filepath.Join(socketDir(t), "submit.sock"), Listen: []string{"127.0.0.1:0"},
		SocketGID: -1, Hostname: "relayq.test", Logger: testLogger(t),
		Limits: Limits{Default: Limit{MessagesPerHour: 100, QueuedBytes: 1 << 20}}})
}

// TestStartingAnswers451AtMail: before Ready, a session is greeted and
// may say EHLO, NOOP and RSET, but MAIL gets 451 4.3.0 and the session
// stays open; after Ready the same session is taken at MAIL and its
// message queued (the limits, with queued bytes that read the queue,
// work too).
func TestStartingAnswers451AtMail(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := startStarting(t)
			c := newClient(t, dial(t, s, network))
			c.run([]step{
				{expect: "220 "},
				{send: "EHLO client.test", expect: "250 "},
				{send: "NOOP", expect: "250 "},
				{send: "MAIL FROM:<cron@example.org>", expect: "451 4.3.0 relayq is starting; try again shortly"},
				{send: "RCPT TO:<a@example.com>", expect: "502 5.5.1 "},
				{send: "RSET", expect: "250 "},
				{send: "MAIL FROM:<cron@example.org>", expect: "451 4.3.0 "},
			})
			q := openQueue(t, queue.Options{})
			s.Ready(q)
			c.run([]step{
				{send: "MAIL FROM:<cron@example.org>", expect: "250 "},
				{send: "RCPT TO:<a@example.com>", expect: "250 "},
				{send: "DATA", expect: "354 "},
				{raw: "Subject: x\r\n\r\nhello\r\n.\r\n", expect: "250 2.0.0 Ok: queued as "},
				{send: "QUIT", expect: "221 "},
			})
			if ms, _ := queued(t, q); len(ms) != 1 {
				t.Errorf("%d messages queued, want 1", len(ms))
			}
		})
	}
}

// TestSubmitWhileStarting: `relayq sendmail`'s Submit takes the starting
// reply for an unreachable daemon (it then uses the maildrop), and the
// JSON API's Submit refuses with ErrStarting; after Ready both queue.
func TestSubmitWhileStarting(t *testing.T) {
	s := startStarting(t)
	env := queue.Envelope{From: "cron@example.org", Recipients: []string{"a@example.com"}}
	_, err := Submit(context.Background(), s.opts.Socket, env, []byte("x\r\n"))
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Submit while starting: %v, want ErrUnreachable", err)
	}
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) || reply.Code != 451 {
		t.Errorf("Submit while starting: %v does not carry the 451", err)
	}
	sub := Submission{From: env.From, Recipients: env.Recipients, Body: []byte("x\r\n"), Submitter: queue.Submitter{UID: 0, Via: "api"}}
	if _, _, err := s.Submit(context.Background(), sub); !errors.Is(err, ErrStarting) {
		t.Fatalf("API Submit while starting: %v, want ErrStarting", err)
	}
	if !Starting(context.Background(), s.opts.Socket) {
		t.Error("Starting: false while starting")
	}
	q := openQueue(t, queue.Options{})
	s.Ready(q)
	if Starting(context.Background(), s.opts.Socket) {
		t.Error("Starting: true once ready")
	}
	if Starting(context.Background(), filepath.Join(socketDir(t), "none.sock")) {
		t.Error("Starting: true with nothing listening")
	}
	if _, err := Submit(context.Background(), s.opts.Socket, env, []byte("x\r\n")); err != nil {
		t.Fatalf("Submit after Ready: %v", err)
	}
	if _, _, err := s.Submit(context.Background(), sub); err != nil {
		t.Fatalf("API Submit after Ready: %v", err)
	}
	if ms, _ := queued(t, q); len(ms) != 2 {
		t.Errorf("%d messages queued, want 2", len(ms))
	}
}

// TestOtherRepliesStayRefusals: a 451 4.3.0 that is not the starting
// reply (a storage failure) is still the daemon's refusal, not a reason
// to use the maildrop.
func TestOtherRepliesStayRefusals(t *testing.T) {
	for _, err := range []error{replyStorage, replyFull, replyShutdown, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "relayq is starting"}} {
		if isStarting(err) {
			t.Errorf("%v taken for the starting reply", err)
		}
	}
	if !isStarting(replyStarting) {
		t.Error("the starting reply is not recognised")
	}
}

// TestInheritedWaitUntilReady: a listener systemd passed is not served
// while the server starts: a connection waits in its backlog, unanswered
// (as while relayq restarts), and gets its greeting and its 250 once the
// server is Ready; the server's own listener answers "starting" meanwhile.
func TestInheritedWaitUntilReady(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := tl.Addr().String()
	s := runServer(t, Options{Socket: filepath.Join(socketDir(t), "submit.sock"), Listen: []string{addr},
		Inherited: map[string]net.Listener{addr: tl}, SocketGID: -1, Hostname: "relayq.test", Logger: testLogger(t)})
	waiting := dial(t, s, "tcp")
	waiting.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := waiting.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("inherited listener answered while starting: %d bytes, %v", n, err)
	}
	own := newClient(t, dial(t, s, "unix"))
	own.run([]step{{expect: "220 "}, {send: "EHLO client.test", expect: "250 "},
		{send: "MAIL FROM:<cron@example.org>", expect: "451 4.3.0 relayq is starting"}})

	q := openQueue(t, queue.Options{})
	s.Ready(q)
	waiting.SetDeadline(time.Now().Add(10 * time.Second))
	c := newClient(t, waiting)
	c.run([]step{{expect: "220 "}, {send: "EHLO client.test", expect: "250 "},
		{send: "MAIL FROM:<cron@example.org>", expect: "250 "}, {send: "RCPT TO:<a@example.com>", expect: "250 "},
		{send: "DATA", expect: "354 "}, {raw: "Subject: x\r\n\r\nwaited\r\n.\r\n", expect: "250 2.0.0 Ok: queued as "}})
}
