package transport

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// replyCode is the SMTP code in a recipient's result: 250 for success, 0
// for a local failure.
func replyCode(r RecipientResult) int {
	var se *smtp.SMTPError
	switch {
	case r.Err == nil:
		return 250
	case errors.As(r.Err, &se):
		return se.Code
	}
	return 0
}

func TestLMTPPerRecipient(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{LMTP: true, Script: smtptest.Script{
		LMTP: map[string][]smtptest.Step{
			"b@example.net": {smtptest.Reply(452, "4.2.2 Mailbox full")},
			"c@example.net": {smtptest.Reply(550, "5.1.1 No such user")},
		},
	}})
	tr := newTransport(t, srv, lmtp)
	rcpts := []string{"a@example.net", "b@example.net", "c@example.net"}
	res, err := send(t, tr, message("s@example.org", rcpts...))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	var codes []int
	for _, r := range res.Recipients {
		codes = append(codes, replyCode(r))
	}
	if !slices.Equal(codes, []int{250, 452, 550}) {
		t.Errorf("codes = %v, want [250 452 550]", codes)
	}
	if got := srv.WaitMessages(t, 1, time.Second)[0]; !slices.Equal(got.To, []string{"a@example.net"}) {
		t.Errorf("delivered to %q, want a only", got.To)
	}

	// The second message on the same connection gets its own replies, in
	// its own order (go-smtp#308).
	res, err = send(t, tr, message("s@example.org", "c@example.net", "b@example.net"))
	if err != nil {
		t.Fatalf("second Send: %v", err)
	}
	for _, r := range res.Recipients {
		if r.Err != nil || r.Reply == "" {
			t.Errorf("second message, %s: err %v reply %q; want delivered", r.Address, r.Err, r.Reply)
		}
	}
	if srv.Connections() != 1 || srv.Hellos()[0] != localName {
		t.Errorf("%d connections, LHLO names %q; want one connection, %q", srv.Connections(), srv.Hellos(), localName)
	}
}

// TestLMTPDropBetweenReplies: the connection breaks after the first of
// three replies. The first recipient is delivered; the others are
// uncertain (AfterDot), not failed.
func TestLMTPDropBetweenReplies(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{LMTP: true, Script: smtptest.Script{
		LMTP: map[string][]smtptest.Step{"b@example.net": {{Fault: smtptest.Drop}}},
	}})
	tr := newTransport(t, srv, lmtp)
	res, err := send(t, tr, message("s@example.org", "a@example.net", "b@example.net", "c@example.net"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.Recipients[0].Err != nil {
		t.Errorf("a: %v, want delivered", res.Recipients[0].Err)
	}
	for _, r := range res.Recipients[1:] {
		te := wantError(t, r.Err, StageDot, true)
		if !te.AfterDot {
			t.Errorf("%s: %v, want AfterDot", r.Address, r.Err)
		}
	}
	// No reply at all is a failure of the whole transaction.
	srv.SetScript(smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Drop}}})
	_, err = send(t, tr, message("s@example.org", "a@example.net", "b@example.net"))
	if te := wantError(t, err, StageDot, true); !te.AfterDot {
		t.Errorf("err = %v, want AfterDot", err)
	}
}

func TestLMTPUnixSocket(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{LMTP: true, Unix: true})
	tr := newTransport(t, srv, lmtp)
	mustSend(t, tr, message("s@example.org", "a@example.net", "b@example.net"))
	mustSend(t, tr, message("s@example.org", "c@example.net"))
	got := srv.WaitMessages(t, 2, time.Second)
	if !slices.Equal(got[1].To, []string{"c@example.net"}) || srv.Network() != "unix" || srv.Connections() != 1 {
		t.Errorf("second message to %q over %s, %d connections", got[1].To, srv.Network(), srv.Connections())
	}
}

// TestDuplicateRecipients: a repeated address goes once per transaction
// (go-smtp keys LMTP replies by address) and both entries get its result.
func TestDuplicateRecipients(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{LMTP: true})
	tr := newTransport(t, srv, lmtp)
	res := mustSend(t, tr, message("s@example.org", "a@example.net", "a@example.net", "A@example.net"))
	if got := srv.WaitMessages(t, 1, time.Second)[0].To; !slices.Equal(got, []string{"a@example.net", "A@example.net"}) {
		t.Errorf("RCPTs %q, want a once and A once", got)
	}
	if res.Recipients[1].Reply == "" || res.Recipients[1].Reply != res.Recipients[0].Reply {
		t.Errorf("duplicate's reply %q, want the first's %q", res.Recipients[1].Reply, res.Recipients[0].Reply)
	}
}
