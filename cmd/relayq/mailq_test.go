package main

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"relayq/queue"
)

// The samples in testdata were written from Postfix's format strings
// (src/postqueue/showq_compat.c, enable_long_queue_ids = yes), not from
// writeMailq: "%-17s %8ld %19.19s %s" for the message line with asctime's
// arrival time, "%-17s %8s %-19s %s" for the heading and the recipient
// lines, "(reason)" right-aligned to column 78 and printed when it changes
// ("reason unavailable" after one with a reason), a blank line between
// messages and the "-- N Kbytes in M Request(s)." footer.
func TestMailqFormat(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.DateTime, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	try451 := &queue.Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"Try again later"}, Stage: "dot"}
	long := &queue.Reply{Lines: []string{"host relay.example.com said: a very long reason that goes past the seventy six columns of padding"}}
	lost := &queue.Reply{Lines: []string{"connection lost after the final dot"}, Stage: "dot"}
	msgs := []*queue.Message{
		{
			ID: "01JDGZ4M7Q0000ABCDEF", From: "cron@example.org", Size: 1234, Created: at("2026-11-25 09:10:13"),
			LeasedUntil: at("2026-11-25 09:25:13"),
			Recipients: []queue.Recipient{
				{Address: "x@example.net", Status: queue.StatusDelivered, LastReply: &queue.Reply{Code: 250}},
				{Address: "a@example.net", Status: queue.StatusQueued},
			},
		},
		{
			ID: "01JDGZ4M7Q0000GHJKMN", From: "", Size: 567, Created: at("2026-11-05 08:01:02"), Held: true,
			Recipients: []queue.Recipient{
				{Address: "b@example.net", Status: queue.StatusDeferred, LastReply: try451},
				{Address: "c@example.net", Status: queue.StatusDeferred, LastReply: try451},
				{Address: "z@example.net", Status: queue.StatusDead, LastReply: &queue.Reply{Code: 550}},
				{Address: "d@example.net", Status: queue.StatusDeferred, LastReply: long},
			},
		},
		{
			ID: "01JDGZ4M7Q0000PQRSTV", From: "root@example.org", Size: 20480, Created: at("2026-11-24 23:59:59"),
			Recipients: []queue.Recipient{
				{Address: "e@example.net", Status: queue.StatusUncertain, LastReply: lost},
				{Address: "f@example.net", Status: queue.StatusQueued},
			},
		},
	}
	for _, tt := range []struct {
		golden string
		msgs   []*queue.Message
	}{
		{"testdata/mailq-postfix-format.txt", msgs},
		{"testdata/mailq-one.txt", []*queue.Message{{
			ID: "01JDGZ4M7Q0000ABCDEF", From: "cron@example.org", Size: 2047, Created: at("2026-11-25 09:10:13"),
			Recipients: []queue.Recipient{{Address: "a@example.net", Status: queue.StatusQueued}},
		}}},
	} {
		want, err := os.ReadFile(tt.golden)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := writeMailq(&got, tt.msgs, time.UTC); err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want) {
			t.Errorf("%s: got\n%s\nwant\n%s", tt.golden, got.String(), want)
		}
	}
	var empty bytes.Buffer
	if err := writeMailq(&empty, nil, time.UTC); err != nil || empty.String() != "Mail queue is empty\n" {
		t.Errorf("empty queue: %q, %v", empty.String(), err)
	}
}

// writeMailq writes msgs (oldest first, as the daemon lists them) in
// Postfix's format, with arrival times in loc, as mailq does page by page.
func writeMailq(w io.Writer, msgs []*queue.Message, loc *time.Location) error {
	out := &mailqWriter{w: w, loc: loc}
	for _, m := range msgs {
		out.add(m)
	}
	return out.end()
}
