package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// A daemon that offers PIPELINING gets MAIL, the RCPTs and DATA in one
// write, the command lines exactly as go-smtp writes them unpipelined; the
// body, the dot and QUIT in one write once DATA has its 354 (this daemon
// answers the dot only once it has read QUIT with it: before, sendmail
// waited for the 250 to send QUIT, and the test hangs), and QUIT's reply
// is not waited for (this daemon never sends it).
func TestSubmitPipelines(t *testing.T) {
	env := queue.Envelope{
		From:         "a@example.org",
		Recipients:   []string{"b@example.org", "c@example.org"},
		DSN:          queue.DSN{Return: "HDRS", EnvelopeID: "env 1"},
		RecipientDSN: []queue.RecipientDSN{{Notify: []string{"FAILURE", "DELAY"}}},
	}
	body := "Subject: x\r\n\r\n.dot\r\n"
	socket, result := scriptedDaemon(t, func(c net.Conn) error {
		steps := []exchange{
			{"EHLO localhost\r\n", "250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n250-DSN\r\n250 SMTPUTF8\r\n"},
			{"MAIL FROM:<a@example.org> BODY=8BITMIME SIZE=20 RET=HDRS ENVID=env+201\r\n" +
				"RCPT TO:<b@example.org> NOTIFY=FAILURE,DELAY\r\n" +
				"RCPT TO:<c@example.org>\r\n" +
				"DATA\r\n",
				"250 2.1.0 ok\r\n250 2.1.5 ok\r\n251 2.1.5 ok\r\n354 go ahead\r\n"},
			{"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n", "250 2.0.0 Ok: queued as Q1\r\n"},
		}
		if err := converse(c, steps); err != nil {
			return err
		}
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			return errors.New("Submit did not close the connection after QUIT")
		}
		return nil
	})
	id, err := Submit(context.Background(), socket, env, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if id != "Q1" {
		t.Errorf("queued as %q, want Q1", id)
	}
	if err := result(); err != nil {
		t.Error(err)
	}
}

// A body too large for one write (bodyWriteSize) goes in writes of that
// size and QUIT after the 250, as before: it is not copied whole into a
// buffer to go with the dot.
func TestSubmitLargeBodyQuitsAfterTheReply(t *testing.T) {
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n", 2*bodyWriteSize/70)
	socket, result := scriptedDaemon(t, func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		steps := []exchange{
			{"EHLO localhost\r\n", "250-scripted\r\n250 PIPELINING\r\n"},
			{"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go ahead\r\n"},
		}
		if err := converse(c, steps); err != nil {
			return err
		}
		r := textproto.NewReader(bufio.NewReader(c))
		got, err := r.ReadDotBytes()
		if err != nil {
			return err
		}
		if string(got) != strings.ReplaceAll(body, "\r\n", "\n") {
			return errors.New("the body arrived changed")
		}
		if r.R.Buffered() > 0 {
			return errors.New("QUIT came with the dot of a large body")
		}
		if err := reply(c, "250 ok queued as Q5\r\n"); err != nil {
			return err
		}
		if line, err := r.ReadLine(); line != "QUIT" {
			return fmt.Errorf("after the 250: %q, %v; want QUIT", line, err)
		}
		return nil
	})
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}}
	id, err := Submit(context.Background(), socket, env, []byte(body))
	if err != nil || id != "Q5" {
		t.Errorf("Submit: %q, %v; want Q5", id, err)
	}
	if err := result(); err != nil {
		t.Error(err)
	}
}

// When the daemon refuses a recipient but takes DATA (it has another), the
// body is not sent: the connection closes before any of it, so nothing is
// queued, and Submit returns the refusal, as it did one command at a time.
func TestSubmitPipelinedRefusalSendsNoBody(t *testing.T) {
	env := queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org", "nobody@example.org"}}
	socket, result := scriptedDaemon(t, func(c net.Conn) error {
		if err := expectRead(c, "EHLO localhost\r\n"); err != nil {
			return err
		}
		if err := reply(c, "250-scripted\r\n250 PIPELINING\r\n"); err != nil {
			return err
		}
		if err := expectRead(c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n"); err != nil {
			return err
		}
		if err := reply(c, "250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n"); err != nil {
			return err
		}
		rest, err := io.ReadAll(c)
		if err != nil || len(rest) > 0 {
			return errors.New("after the refusal the client sent " + quote(string(rest)) + ", want nothing")
		}
		return nil
	})
	_, err := Submit(context.Background(), socket, env, []byte("x\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || se.Message != "no such user" {
		t.Errorf("Submit: %v, want the 550 5.1.1 reply", err)
	}
	if errors.Is(err, ErrUnreachable) {
		t.Error("a refusal counted as unreachable (sendmail would write a maildrop file)")
	}
	if err := result(); err != nil {
		t.Error(err)
	}
}

func TestReplyError(t *testing.T) {
	tests := []struct {
		code     int
		msg      string
		enhanced smtp.EnhancedCode
		text     string
	}{
		{451, "4.3.0 relayq is starting", smtp.EnhancedCode{4, 3, 0}, "relayq is starting"},
		{550, "5.1.1 first\n5.1.1 second", smtp.EnhancedCode{5, 1, 1}, "first\nsecond"},
		{554, "no enhanced code", smtp.EnhancedCode{}, "no enhanced code"},
		{554, "5.x.0 not one", smtp.EnhancedCode{}, "5.x.0 not one"},
		{421, "bye", smtp.EnhancedCode{}, "bye"},
	}
	for _, tt := range tests {
		se := replyError(&textproto.Error{Code: tt.code, Msg: tt.msg})
		if se.Code != tt.code || se.EnhancedCode != tt.enhanced || se.Message != tt.text {
			t.Errorf("%d %q: got %d %v %q, want %v %q", tt.code, tt.msg, se.Code, se.EnhancedCode, se.Message, tt.enhanced, tt.text)
		}
	}
}
