package spool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/mail"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/queue"
)

// TestAddedHeaders: as Postfix does for local submitters, the intake puts
// a Received header first, naming relayq, the queue ID and the submitter
// (its uid, and over TCP its HELO name and address: the uid there is the
// owner of the client's socket), and adds
// Date and Message-ID when the message has none. A message that has them
// keeps its own, and its bytes follow the Received header unchanged.
func TestAddedHeaders(t *testing.T) {
	date := `[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [-+]\d{4}`
	uid := fmt.Sprint(os.Getuid())
	received := map[string]string{
		"unix": `Received: by relayq\.test \(relayq, from userid ` + uid + `\)\r\n\twith (E?SMTP) id (\w{20}); (` + date + `)\r\n`,
		"tcp":  `Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby relayq\.test \(relayq, from userid ` + uid + `\)\r\n\twith (E?SMTP) id (\w{20}); (` + date + `)\r\n`,
	}
	const bare = "Subject: no date\r\nFrom: a@example.org\r\n\r\nbody\r\n"
	const full = "Subject: dated\r\nDATE: Tue, 1 Dec 2026 10:00:00 +0100\r\nmessage-id: <own@example.org>\r\n\r\nbody\r\n"
	for _, network := range []string{"unix", "tcp"} {
		for _, greet := range []string{"EHLO", "HELO"} {
			for _, msg := range []string{bare, full} {
				s := startServer(t, Options{})
				c := newClient(t, dial(t, s, network))
				c.run([]step{
					{expect: "220"},
					{send: greet + " client.test", expect: "250"},
					{send: "MAIL FROM:<a@example.org>", expect: "250"},
					{send: "RCPT TO:<b@example.net>", expect: "250"},
					{send: "DATA", expect: "354"},
					{raw: msg + ".\r\n", expect: queuedReply},
				})
				msgs, _ := queued(t, s.opts.Queue)
				if len(msgs) != 1 {
					t.Fatalf("%d messages queued", len(msgs))
				}
				id := msgs[0].ID
				got, _ := io.ReadAll(s.opts.Queue.Body(id))
				what := fmt.Sprintf("%s over %s, %.20q", greet, network, msg)

				m := regexp.MustCompile(`^` + received[network]).FindSubmatch(got)
				if m == nil {
					t.Errorf("%s: queued %q, want it to begin with Received matching %q", what, got, received[network])
					continue
				}
				if with := map[string]string{"EHLO": "ESMTP", "HELO": "SMTP"}[greet]; string(m[1]) != with || string(m[2]) != id {
					t.Errorf("%s: Received says with %s id %s, want with %s id %s", what, m[1], m[2], with, id)
				}
				rest := got[len(m[0]):]
				want := msg
				if msg == bare {
					stamped, _ := time.Parse(time.RFC1123Z, string(m[3]))
					want = fmt.Sprintf("Date: %s\r\nMessage-ID: <%s.%s@relayq.test>\r\n%s",
						m[3], stamped.UTC().Format("20060102150405"), id, msg)
				}
				if string(rest) != want {
					t.Errorf("%s: after Received %q, want %q", what, rest, want)
				}
				parsed, err := mail.ReadMessage(bytes.NewReader(got))
				if err != nil {
					t.Fatalf("%s: queued message does not parse: %v", what, err)
				}
				if d, err := parsed.Header.Date(); err != nil || time.Since(d) > time.Hour && msg == bare {
					t.Errorf("%s: Date %v, %v", what, d, err)
				}
				if mid := parsed.Header.Get("Message-ID"); !strings.HasPrefix(mid, "<") || !strings.HasSuffix(mid, ">") {
					t.Errorf("%s: Message-ID %q", what, mid)
				}
			}
		}
	}
}

// TestAddedHeadersHeloSafe: a HELO name that could break the Received
// header (a comment's parentheses, a very long name) is tamed.
func TestAddedHeadersHeloSafe(t *testing.T) {
	for helo, want := range map[string]string{
		"x)(y\\z":                "x__y_z",
		strings.Repeat("h", 300): strings.Repeat("h", maxHeloInHeader),
	} {
		if got := headerSafe(helo); got != want {
			t.Errorf("headerSafe(%.20q) = %.20q (%d bytes), want %.20q", helo, got, len(got), want)
		}
	}
	for addr, want := range map[string]string{"127.0.0.1:25": "[127.0.0.1]", "[::1]:2525": "[IPv6:::1]"} {
		if got := string(appendBracketAddr(nil, addr)); got != want {
			t.Errorf("appendBracketAddr(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestMaildropAddsReceived: a message sendmail left in the maildrop (the
// daemon was down) gets relayq's Received too when it is imported, naming
// the file owner's uid and the queue ID, as Postfix's pickup does; the
// Date and Message-ID sendmail wrote stay.
func TestMaildropAddsReceived(t *testing.T) {
	dir := maildropDir(t)
	q := openQueue(t, queue.Options{})
	msg := "Date: Tue, 1 Dec 2026 10:00:00 +0100\r\nMessage-ID: <own@example.org>\r\nSubject: x\r\n\r\nbody\r\n"
	if _, err := WriteMaildrop(dir, queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.net"}}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if n, err := (&Maildrop{Dir: dir, Queue: q, Hostname: "mx.relayq.test", Log: testLogger(t)}).Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("Import = %d, %v", n, err)
	}
	msgs, _ := queued(t, q)
	got, _ := io.ReadAll(q.Body(msgs[0].ID))
	re := regexp.MustCompile(`^Received: by mx\.relayq\.test \(relayq, from userid ` + fmt.Sprint(os.Getuid()) + `\)\r\n\tid ` + msgs[0].ID + `; [^\r]+\r\n`)
	if m := re.Find(got); m == nil || string(got[len(m):]) != msg {
		t.Errorf("queued %q, want %q after a Received matching %q", got, msg, re)
	}
}

// refStampMessage is stampMessage as it was written before it avoided
// fmt and splitHeader's copies: the specification it must still meet.
func refStampMessage(msg []byte, s stamp) []byte {
	date := s.now.Format(time.RFC1123Z)
	var b bytes.Buffer
	b.WriteString("Received: ")
	if s.submitter.Via == viaTCP {
		fmt.Fprintf(&b, "from %s (%s)\r\n\t", headerSafe(s.helo), appendBracketAddr(nil, s.submitter.Addr))
	}
	if s.submitter.UID >= 0 {
		fmt.Fprintf(&b, "by %s (relayq, from userid %d)", s.hostname, s.submitter.UID)
	} else {
		fmt.Fprintf(&b, "by %s (relayq)", s.hostname)
	}
	b.WriteString("\r\n\t")
	if s.with != "" {
		fmt.Fprintf(&b, "with %s ", s.with)
	}
	fmt.Fprintf(&b, "id %s; %s\r\n", s.id, date)
	fields, _ := splitHeader(msg)
	has := func(name string) bool {
		return slices.ContainsFunc(fields, func(f field) bool { return f.is(name) })
	}
	if !has("Date") {
		fmt.Fprintf(&b, "Date: %s\r\n", date)
	}
	if !has("Message-ID") {
		fmt.Fprintf(&b, "Message-ID: <%s.%s@%s>\r\n", s.now.UTC().Format("20060102150405"), s.id, s.hostname)
	}
	if len(fields) == 0 && len(msg) > 0 && !bytes.HasPrefix(msg, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.Write(msg)
	return b.Bytes()
}

// TestStampMessageAsBefore: stampMessage writes what refStampMessage
// writes, for every kind of submitter and header.
func TestStampMessageAsBefore(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 5, 1, 0, time.FixedZone("X", 3600))
	stamps := []stamp{
		{id: "ID1", hostname: "mx.test", helo: "client.example", with: "ESMTP", now: now, submitter: queue.Submitter{Via: viaTCP, Addr: "127.0.0.1:5000", UID: -1}},
		{id: "ID2", hostname: "mx.test", helo: "bad (name)\\é", with: "SMTP", now: now, submitter: queue.Submitter{Via: viaTCP, Addr: "[::1]:25", UID: -1}},
		{id: "ID3", hostname: "mx.test", helo: "", now: now, submitter: queue.Submitter{Via: viaTCP, Addr: "nohostport", UID: -1}},
		{id: "ID6", hostname: "mx.test", helo: "client.example", with: "ESMTP", now: now, submitter: queue.Submitter{Via: viaTCP, Addr: "127.0.0.1:5000", UID: 1000}},
		{id: "ID4", hostname: "mx.test", with: "ESMTP", now: now, submitter: queue.Submitter{Via: viaSocket, UID: 1000}},
		{id: "ID5", hostname: "mx.test", now: now, submitter: queue.Submitter{Via: viaMaildrop, UID: -1}},
	}
	msgs := []string{
		"", "\r\n", "\r\nbody only\r\n", "no header line\r\n", "Subject: x\r\n\r\nbody\r\n",
		"date: Mon, 1 Jan 2026 00:00:00 +0000\r\nMESSAGE-id: <a@b>\r\n\r\nx\r\n",
		"Subject: a\r\n folded\r\nDate: x\r\n\r\n", "Subject: a\r\nX-Date: y\r\nMessage-IDs: z\r\nbroken line\r\nDate: late\r\n",
		" leading space\r\n", "Subject: no end", "Date:x\r\n",
	}
	for _, st := range stamps {
		for _, m := range msgs {
			want := refStampMessage([]byte(m), st)
			if got := stampMessage(nil, []byte(m), st); !bytes.Equal(got, want) {
				t.Errorf("stamp %+v, message %q:\ngot  %q\nwant %q", st, m, got, want)
			}
			// Into a pooled buffer, as the session stamps, holding the
			// bytes of an earlier message.
			buf := append(takeBodyBuffer(), "an earlier message"...)
			if got := stampMessage(buf[:0], []byte(m), st); !bytes.Equal(got, want) {
				t.Errorf("stamp %+v, message %q into a used buffer:\ngot  %q\nwant %q", st, m, got, want)
			}
			giveBodyBuffer(buf)
		}
	}
}

// The session stamps a message into a pooled buffer: for a message that
// fits, stamping allocates nothing (it allocated a copy of every message
// before, the largest allocation of the intake).
func TestStampMessageIntoBufferAllocatesNothing(t *testing.T) {
	msg := []byte("From: a@example.org\r\nSubject: x\r\n\r\n" + strings.Repeat("body line\r\n", 500))
	st := stamp{id: "ID1", hostname: "mx.test", helo: "client.example", with: "ESMTP", now: time.Now(),
		submitter: queue.Submitter{Via: viaTCP, Addr: "127.0.0.1:5000", UID: -1}}
	buf := make([]byte, 0, len(msg)+512)
	if n := testing.AllocsPerRun(100, func() { buf = stampMessage(buf[:0], msg, st) }); n != 0 {
		t.Errorf("stamping into a buffer with room: %v allocations, want 0", n)
	}
	if want := refStampMessage(msg, st); !bytes.Equal(buf, want) {
		t.Errorf("stamped %q, want %q", buf, want)
	}
}
