package spool

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"relayq/queue"
)

// TestServeStandalone: the session sendmail -bs runs while the daemon is
// down answers as the daemon would (bad addresses 501, NUL octets 554 5.6.0,
// the DATA after CR CR LF read right, DSN requests kept), writes each
// message it takes to the maildrop before its 250, and ends at the end of
// its input.
func TestServeStandalone(t *testing.T) {
	dir := maildropDir(t)
	in := "EHLO client.test\r\n" +
		"MAIL FROM:<-oQ/tmp/x@example.org>\r\n" +
		"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: nul\r\n\r\n\x00\r\n.\r\n" +
		"MAIL FROM:<a@example.org> RET=HDRS\r\nRCPT TO:<b@example.net> NOTIFY=FAILURE\r\nRCPT TO:<b@EXAMPLE.NET>\r\nDATA\r\nSubject: ok\r\n\r\nx\r\r\n..y\r\n.\r\n"
	var out bytes.Buffer
	if err := ServeStandalone(strings.NewReader(in), &out, StandaloneOptions{Maildrop: dir, Hostname: "mx.relayq.test", Log: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	replies := out.String()
	for _, want := range []string{"220 mx.relayq.test ", "250-mx.relayq.test Hello client.test", "\r\n501 5.1.7 ", "\r\n554 5.6.0 ", "\r\n250 2.0.0 Ok: queued in the maildrop as "} {
		if !strings.Contains(replies, want) {
			t.Errorf("replies %q lack %q", replies, want)
		}
	}
	q := openQueue(t, queue.Options{})
	if n, err := (&Maildrop{Dir: dir, Queue: q, Log: testLogger(t)}).Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("Import = %d, %v; want the one message", n, err)
	}
	msgs, bodies := queued(t, q)
	if len(msgs) != 1 || len(msgs[0].Recipients) != 1 || bodies[0] != "Subject: ok\r\n\r\nx\r\n\r\n.y\r\n" {
		t.Fatalf("queued %+v: %q", msgs, bodies)
	}
	if m := msgs[0]; m.DSN.Return != "HDRS" || !slices.Equal(m.Recipients[0].DSN.Notify, []string{"FAILURE"}) {
		t.Errorf("DSN requests %+v, %+v; want RET=HDRS and NOTIFY=FAILURE kept", m.DSN, m.Recipients[0].DSN)
	}
}

// TestServeStandaloneKeepsMinFree: below min_free on the queue's file
// system, sendmail -bs with the daemon down refuses at MAIL FROM with
// 452 4.3.1, as intake does, and writes nothing to the maildrop.
func TestServeStandaloneKeepsMinFree(t *testing.T) {
	dir := maildropDir(t)
	free, err := queue.FreeSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	in := "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n"
	var out bytes.Buffer
	opts := StandaloneOptions{Maildrop: dir, Hostname: "mx.relayq.test", Log: testLogger(t),
		QueuePath: filepath.Join(dir, "queue.db"), MinFree: free + 1<<30}
	if err := ServeStandalone(strings.NewReader(in), &out, opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\r\n452 4.3.1 ") {
		t.Errorf("replies %q lack 452 4.3.1 at MAIL FROM", out.String())
	}
	if got := listDir(t, dir); len(got) != 0 {
		t.Errorf("maildrop holds %q, want nothing", got)
	}
}
