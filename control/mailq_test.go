package control

import (
	"os"
	"path/filepath"
	"testing"

	"relayq/queue"
)

// TestMailqSocket: the mailq socket is mode 0666 and answers OpMailq with
// only what Postfix's mailq shows (no submitter, no history, only the
// recipients still pending), and refuses every other request, whoever
// asks: a local user gets the listing, not the control socket's powers.
func TestMailqSocket(t *testing.T) {
	q, dir := newTestQueue(t)
	id := putTestMessage(t, q, "a@y.org", "b@y.org")
	l, err := q.Lease(1)
	if err != nil || len(l) != 1 {
		t.Fatalf("lease: %v %v", l, err)
	}
	if _, err := q.Record(l[0], []queue.Outcome{{Address: "a@y.org", Result: queue.Delivered, Reply: &queue.Reply{Code: 250, Lines: []string{"ok"}}}}); err != nil {
		t.Fatal(err)
	}
	mailqSock := filepath.Join(dir, "mailq.sock")
	serveTest(t, dir, Options{Queue: q, MailqSocket: mailqSock, AdminGID: -1})
	if fi, err := os.Stat(mailqSock); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("mailq socket: %v, mode %v; want 0666", err, fi.Mode().Perm())
	}
	resp, err := Call(t.Context(), mailqSock, Request{Op: OpMailq})
	if err != nil || len(resp.Messages) != 1 {
		t.Fatalf("mailq: %+v, %v; want one message", resp, err)
	}
	m := resp.Messages[0]
	if m.ID != id || m.From != "a@x.org" || m.Size == 0 || m.Created.IsZero() {
		t.Errorf("mailq gave %+v; want ID, sender, size and arrival time", m)
	}
	if len(m.Recipients) != 1 || m.Recipients[0].Address != "b@y.org" || m.Submitter != (queue.Submitter{}) || m.History != nil || m.Attempts != 0 {
		t.Errorf("mailq gave %+v; want only the pending recipient b@y.org, no submitter, history or attempts", m)
	}
	for _, op := range []string{OpQueueList, OpQueueShow, OpQueueDelete, OpDeadPurge, OpStatus} {
		resp, err := Call(t.Context(), mailqSock, Request{Op: op, IDs: []string{id}, All: true})
		if err == nil || resp == nil || resp.Code != CodeDenied {
			t.Errorf("%s on the mailq socket: %+v, %v; want it refused (%s)", op, resp, err, CodeDenied)
		}
	}
	if _, err := q.Get(id); err != nil {
		t.Errorf("the message is gone: %v", err)
	}
}
