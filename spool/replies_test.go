package spool

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/queue"
)

// writeLog is a listener whose connections count each Write the server
// makes and, unless countOnly, record it as one string per write.
type writeLog struct {
	net.Listener
	countOnly bool
	mu        sync.Mutex
	n         int
	writes    []string
}

func (l *writeLog) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &loggedConn{Conn: c, log: l}, nil
}

func (l *writeLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *writeLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.writes...)
}

type loggedConn struct {
	net.Conn
	log *writeLog
}

func (c *loggedConn) Write(b []byte) (int, error) {
	c.log.mu.Lock()
	c.log.n++
	if !c.log.countOnly {
		c.log.writes = append(c.log.writes, string(b))
	}
	c.log.mu.Unlock()
	return c.Conn.Write(b)
}

// startLoggedServer starts a server whose one TCP listener records the
// server's writes.
func startLoggedServer(t testing.TB, opts Options) (*Server, *writeLog) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := &writeLog{Listener: l}
	opts.Listen = []string{"logged"}
	opts.Inherited = map[string]net.Listener{"logged": wl}
	return startServer(t, opts), wl
}

// replyCodes is the code of each reply line in a write ("250-" counted as
// a line of its own).
func replyCodes(w string) []string {
	var codes []string
	for _, line := range strings.SplitAfter(w, "\r\n") {
		if len(line) >= 4 {
			codes = append(codes, line[:4])
		}
	}
	return codes
}

// TestPipelinedRepliesTogether: a client that pipelines (RFC 2920) gets
// the replies to its group in one write: the EHLO reply's lines together,
// 250, 250 and 354 to MAIL, RCPT and DATA together, and the 250 to its
// message together with the 221 to a QUIT sent right after the dot. The
// message is queued.
func TestPipelinedRepliesTogether(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s, wl := startLoggedServer(t, Options{Queue: q})
	nc := dial(t, s, "tcp")
	c := newClient(t, nc)
	c.run([]step{{expect: "220 "}, {send: "EHLO client.test", expect: "250 "}})
	c.run([]step{
		{raw: "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", expect: "250 2.0.0"},
		{expect: "250 2.0.0"},
		{expect: "354 "},
		{raw: "Subject: pipelined\r\n\r\nhi\r\n.\r\nQUIT\r\n", expect: queuedReply},
		{expect: "221 2.0.0"},
	})
	c.expectClosed()

	writes := wl.all()
	var got []string
	for _, w := range writes {
		got = append(got, strings.Join(replyCodes(w), ""))
	}
	ehlo := strings.Repeat("250-", strings.Count(writes[1], "250-")) + "250 "
	want := []string{"220 ", ehlo, "250 250 354 ", "250 221 "}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the server's writes, by reply codes: %q, want %q", got, want)
	}
	if _, bodies := queued(t, q); len(bodies) != 1 || bodies[0] != "Subject: pipelined\r\n\r\nhi\r\n" {
		t.Errorf("queued %q, want the one message", bodies)
	}
}

// TestRepliesNeverHeldFromAWaitingClient: a client that waits for each
// reply before it sends anything more gets it, whatever the command: a raw
// dialog (greeting, EHLO, HELO, NOOP, RSET, refusals, a message, QUIT),
// go-smtp's own client, and a pipelined client whose next message waits
// for memory: the 250 to its first message and the replies to the MAIL
// and RCPT pipelined after it arrive while that wait goes on. Each read
// below would run into the connection's deadline if a reply were held.
func TestRepliesNeverHeldFromAWaitingClient(t *testing.T) {
	t.Run("raw dialog", func(t *testing.T) {
		s, wl := startLoggedServer(t, Options{})
		c := newClient(t, dial(t, s, "tcp"))
		c.run(dialog(hello, []step{
			{send: "NOOP", expect: "250 "},
			{send: "HELO again.test", expect: "250 "},
			{send: "MAIL FROM:<bad address>", expect: "501 "},
			{send: "RCPT TO:<b@example.org>", expect: "502 "},
			{send: "RSET", expect: "250 "},
		}, transaction("Subject: x\r\n\r\nbody\r\n.\r\n", queuedReply), []step{{send: "QUIT", expect: "221 "}}))
		c.expectClosed()
		// Each reply in a write of its own, the EHLO reply's lines
		// together.
		for _, w := range wl.all() {
			if codes := replyCodes(w); len(codes) == 0 || strings.Count(strings.Join(codes, ""), " ") != 1 || codes[len(codes)-1][3] != ' ' {
				t.Errorf("write %q is not one reply", w)
			}
		}
	})
	t.Run("go-smtp client", func(t *testing.T) {
		q := openQueue(t, queue.Options{})
		s := startServer(t, Options{Queue: q})
		cl := smtp.NewClient(dial(t, s, "tcp"))
		for i := range 3 {
			msg := fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i)
			if err := cl.SendMail("a@example.org", []string{"b@example.org"}, strings.NewReader(msg)); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		if err := cl.Quit(); err != nil {
			t.Fatal(err)
		}
		if msgs, _ := queued(t, q); len(msgs) != 3 {
			t.Errorf("%d messages queued, want 3", len(msgs))
		}
	})
	t.Run("pipelined past a wait for memory", func(t *testing.T) {
		// A share of two chunks of memory (128 KiB) for the socket's user.
		q := openQueue(t, queue.Options{})
		s := startServer(t, Options{Queue: q, MaxMessageSize: 64 << 10, MaxMemory: 256 << 10, MemoryWait: time.Minute})
		key := "uid " + strconv.Itoa(os.Getuid())
		c := newClient(t, dial(t, s, "unix"))
		c.run(dialog(hello, []step{
			{send: "MAIL FROM:<a@example.org>", expect: "250 "},
			{send: "RCPT TO:<b@example.org>", expect: "250 "},
			{send: "DATA", expect: "354 "},
			{raw: "Subject: first\r\n\r\n"},
		}))
		waitFor(t, "the first message holding a chunk", func() bool { return s.mem.heldBy(key) == memChunk })
		// hog takes the other chunk, then waiter waits for one: when the
		// first message is done, waiter gets its chunk.
		hog := startMemClient(t, s, "unix", 1, 10<<10)
		if err := hog.send(0, 1<<10); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the share held", func() bool { return s.mem.heldBy(key) == 2*memChunk })
		waiter := startMemClient(t, s, "unix", 2, 10<<10)
		if err := waiter.send(0, 1<<10); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a message waiting for memory", func() bool { return s.mem.waitingKeys() == 1 })

		// The first message's end and a whole BDAT transaction, in one
		// write the server reads at once: the second message waits for
		// memory (a minute) with the replies before it answered.
		second := "Subject: second\r\n\r\n"
		c.run([]step{
			{raw: "x\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.org>\r\n" +
				fmt.Sprintf("BDAT %d LAST\r\n", len(second)) + second, expect: queuedReply},
			{expect: "250 "},
			{expect: "250 "},
		})
		waitFor(t, "the second message waiting for memory", func() bool { return s.mem.waitingKeys() == 1 && s.mem.heldBy(key) == 2*memChunk })
		// Their memory goes back: the second message goes on.
		hog.c.conn.Close()
		waiter.c.conn.Close()
		c.run([]step{{expect: queuedReply}, {send: "QUIT", expect: "221 "}})
		if msgs, _ := queued(t, q); len(msgs) != 2 {
			t.Errorf("%d messages queued, want 2", len(msgs))
		}
	})
}

// TestHeldReplyWriteFailure: once a write of held replies fails, the next
// read fails with the same error instead of waiting for a client that never
// got its reply, and so does every later write.
func TestHeldReplyWriteFailure(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	var h heldReplies
	if err := h.write(a, []byte("250 2.0.0 OK\r\n"), true); err != nil {
		t.Fatalf("a held write: %v", err)
	}
	if err := h.flush(a); err == nil {
		t.Fatal("flush to a closed peer: no error")
	}
	if err := h.write(a, []byte("250 2.0.0 OK\r\n"), true); err == nil {
		t.Error("a write after a failed flush: no error")
	}
}

// TestContinued: which reply lines go-smtp follows with another at once.
func TestContinued(t *testing.T) {
	for in, want := range map[string]bool{
		"250-relayq.test Hello x\r\n": true,
		"250-PIPELINING\r\n":          true,
		"250 SIZE\r\n":                false,
		"354 Go ahead\r\n":            false,
		"250-a\r\n250 b\r\n":          false,
		"250 a\r\n250-b\r\n":          true,
		"25\r\n":                      false,
		"":                            false,
	} {
		if got := continued([]byte(in)); got != want {
			t.Errorf("continued(%q) = %v, want %v", in, got, want)
		}
	}
}
