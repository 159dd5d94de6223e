package main

import (
	"reflect"
	"strings"
	"testing"

	"relayq/queue"
	"relayq/spool"
)

// TestSendmailDSN: -N, -R and -V reach the queue with the message, for
// every recipient, over the socket and through the maildrop.
func TestSendmailDSN(t *testing.T) {
	args := func(s sendmailSetup) []string {
		return []string{"-c", s.config, "-v", "-N", "success,Delay", "-R", "hdrs", "-V", "job 7", "a@example.com", "b@example.com"}
	}
	check := func(t *testing.T, m *queue.Message) {
		t.Helper()
		if m.DSN != (queue.DSN{Return: "HDRS", EnvelopeID: "job 7"}) {
			t.Errorf("RET/ENVID %+v", m.DSN)
		}
		for _, r := range m.Recipients {
			if !reflect.DeepEqual(r.DSN.Notify, []string{"SUCCESS", "DELAY"}) {
				t.Errorf("recipient %s NOTIFY %q, want SUCCESS,DELAY", r.Address, r.DSN.Notify)
			}
		}
	}
	t.Run("socket", func(t *testing.T) {
		s := newSendmailSetup(t, "")
		q := s.startIntake(t, queue.Options{}, spool.Options{})
		res := runSendmailTest("Subject: hi\n\nhello\n", args(s)...)
		if res.code != exitOK {
			t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
		}
		m, err := q.Get(strings.TrimPrefix(strings.TrimSpace(res.stdout), "queued as "))
		if err != nil {
			t.Fatal(err)
		}
		check(t, m)
	})
	t.Run("maildrop", func(t *testing.T) {
		s := newSendmailSetup(t, "")
		if err := spool.EnsureMaildrop(s.maildrop); err != nil {
			t.Fatal(err)
		}
		if res := runSendmailTest("Subject: hi\n\nhello\n", args(s)...); res.code != exitOK {
			t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
		}
		q := s.startIntake(t, queue.Options{}, spool.Options{})
		md := &spool.Maildrop{Dir: s.maildrop, Queue: q}
		if n, err := md.Import(t.Context()); err != nil || n != 1 {
			t.Fatalf("Import = %d, %v", n, err)
		}
		ids, err := q.List()
		if err != nil || len(ids) != 1 {
			t.Fatalf("queue holds %v, %v", ids, err)
		}
		check(t, ids[0])
	})
}

func TestSendmailDSNUsage(t *testing.T) {
	for _, bad := range [][]string{
		{"-N", "never,success", "a@example.com"},
		{"-N", "sometimes", "a@example.com"},
		{"-N", "delay,delay", "a@example.com"},
		{"-R", "all", "a@example.com"},
		{"-V", "a\tb", "a@example.com"},
		{"-V", strings.Repeat("x", 101), "a@example.com"},
	} {
		if res := runSendmailTest("x\n", bad...); res.code != exitUsage || !strings.Contains(res.stderr, "-"+bad[0][1:]) {
			t.Errorf("sendmail %q: exit %d, stderr %q; want %d naming the flag", bad, res.code, res.stderr, exitUsage)
		}
	}
}
