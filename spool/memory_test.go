package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/queue"
)

// heldBy returns what key holds of b now.
func (b *memBudget) heldBy(key string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.perKey[key]
}

// waitingKeys returns how many keys have a message waiting for memory.
func (b *memBudget) waitingKeys() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := map[string]bool{}
	for h := range b.holds {
		if h.waiting {
			keys[h.key] = true
		}
	}
	return len(keys)
}

func (h *memHold) isWaiting() bool {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	return h.waiting
}

// TestMemBudgetShares: a budget of 1 MiB, 512 KiB a key. A key at its
// share cannot grow past it (errOverShare: waiting would not help); a
// second key takes the other half; a third waits while the holders are
// busy, is woken by a release and gets the room, and is refused once its
// wait is spent. Everything released, nothing is held.
func TestMemBudgetShares(t *testing.T) {
	b := newMemBudget(1<<20, 256<<10, time.Second)
	if b.total != 1<<20 || b.share != 512<<10 {
		t.Fatalf("budget %d, share %d; want 1 MiB, 512 KiB", b.total, b.share)
	}
	a := b.hold("uid 1")
	if err := a.grow(512 << 10); err != nil {
		t.Fatal(err)
	}
	if err := a.grow(512<<10 + 1); !errors.Is(err, errOverShare) {
		t.Errorf("growing past the share: %v, want errOverShare", err)
	}
	c := b.hold("uid 2")
	if err := c.grow(100); err != nil || c.held != memChunk {
		t.Fatalf("second key: %v, held %d; want one chunk", err, c.held)
	}
	if err := c.grow(512 << 10); err != nil {
		t.Fatal(err)
	}
	// The budget is full; both holders are busy (not waiting): a third
	// key waits, and a release wakes it.
	d := b.hold("uid 3")
	done := make(chan error, 1)
	go func() { done <- d.grow(1) }()
	waitFor(t, "the third key to wait", d.isWaiting)
	a.release()
	if err := <-done; err != nil {
		t.Errorf("after a release: %v, want the room", err)
	}
	// Nobody releases now: the wait runs out.
	b.wait = 50 * time.Millisecond
	e := b.hold("uid 4")
	if err := e.grow(512 << 10); !errors.Is(err, errNoMemory) {
		t.Errorf("with the budget full: %v, want errNoMemory", err)
	}
	for _, h := range []*memHold{c, d, e, a} {
		h.release()
	}
	if used, _ := b.inFlight(); used != 0 || len(b.perKey) != 0 || len(b.holds) != 0 {
		t.Errorf("after every release: %d in flight, %v by key, %d holds", used, b.perKey, len(b.holds))
	}
}

// TestMemBudgetYoungestRefused: two messages of one key fill its share and
// both need more. Neither can finish while the other holds its part, so
// the younger is refused at once (well before the wait runs out) and the
// older gets its room.
func TestMemBudgetYoungestRefused(t *testing.T) {
	b := newMemBudget(1<<20, 0, time.Minute)
	older, younger := b.hold("uid 1"), b.hold("uid 1")
	for _, h := range []*memHold{older, younger} {
		if err := h.grow(256 << 10); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- older.grow(300 << 10) }()
	waitFor(t, "the older message to wait", older.isWaiting)
	start := time.Now()
	if err := younger.grow(300 << 10); !errors.Is(err, errNoMemory) {
		t.Errorf("younger: %v, want errNoMemory", err)
	}
	younger.release()
	if err := <-done; err != nil {
		t.Errorf("older: %v, want the room", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the deadlock took %v to resolve, want no wait", took)
	}
	older.release()
}

// memMessage is a message of about size bytes whose body names seq.
func memMessage(seq, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: memory %d\r\n\r\n", seq)
	line := fmt.Sprintf("%d %s\r\n", seq, strings.Repeat("m", 76))
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}

// memClient is one SMTP session that sends its message in two parts.
type memClient struct {
	c    *client
	body string
}

// start opens the session up to the 354 over network.
func startMemClient(t *testing.T, s *Server, network string, seq, size int) *memClient {
	t.Helper()
	nc := dial(t, s, network)
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := newClient(t, nc)
	c.run([]step{
		{expect: "220"}, {send: "EHLO c.example", expect: "250"},
		{send: "MAIL FROM:<s@example.org>", expect: "250"},
		{send: fmt.Sprintf("RCPT TO:<r%d@example.net>", seq), expect: "250"},
		{send: "DATA", expect: "354"},
	})
	return &memClient{c: c, body: memMessage(seq, size)}
}

// send writes body[from:to] (and the final dot when to is the end); it
// touches no testing.TB, so goroutines may call it.
func (m *memClient) send(from, to int) error {
	data := m.body[from:to]
	if to == len(m.body) {
		data += ".\r\n"
	}
	_, err := io.WriteString(m.c.conn, data)
	return err
}

// TestMemoryBudgetBurst: a Server with a real queue and a 1 MiB budget
// (512 KiB for one submitter); four clients on the socket (uid of the
// test) and four on TCP (another uid's sockets) each send 300 KiB, all of them having
// sent half before any sends the rest, so that the messages cannot all be
// held at once. Some get 452 4.3.1 after their final dot, the others 250;
// exactly the 250'd messages are queued, whole; nothing stays reserved;
// and a later session succeeds.
func TestMemoryBudgetBurst(t *testing.T) {
	q := openQueue(t, queue.Options{})
	s := startServerWith(t, Options{Queue: q, MaxMessageSize: 400 << 10, MaxMemory: 1 << 20, MemoryWait: 5 * time.Second}, tcpOwnedBy(nobodyUID))
	const n, size = 8, 300 << 10
	clients := make([]*memClient, n)
	for i := range clients {
		network := "unix"
		if i%2 == 1 {
			network = "tcp"
		}
		clients[i] = startMemClient(t, s, network, i, size)
	}
	half := size / 2
	errs := make(chan error, n)
	for _, m := range clients {
		go func() { errs <- m.send(0, half) }()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The halves alone are more than a key's share: each key has a
	// message waiting.
	waitFor(t, "a message of each key waiting", func() bool { return s.mem.waitingKeys() == 2 })
	replies := make([]string, n)
	var wg sync.WaitGroup
	for i, m := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.send(half, len(m.body)); err != nil {
				replies[i] = err.Error()
				return
			}
			replies[i], _ = m.c.reply()
		}()
	}
	wg.Wait()
	accepted := map[string]bool{}
	refused := 0
	for i, r := range replies {
		switch {
		case strings.HasPrefix(r, "250 2.0.0"):
			accepted[clients[i].body] = true
		case strings.HasPrefix(r, "452 4.3.1 Insufficient system storage"):
			refused++
		default:
			t.Errorf("client %d: reply %q, want 250 or 452 4.3.1", i, r)
		}
	}
	if len(accepted) == 0 || refused == 0 {
		t.Errorf("%d accepted, %d refused: want some of each", len(accepted), refused)
	}
	_, bodies := queued(t, q)
	if len(bodies) != len(accepted) {
		t.Errorf("%d messages queued, %d acknowledged", len(bodies), len(accepted))
	}
	for _, b := range bodies {
		if !accepted[b] {
			t.Errorf("queued a message that was not acknowledged, or not whole (%d bytes)", len(b))
		}
	}
	if used, _ := s.MemoryInFlight(); used != 0 {
		t.Errorf("%d bytes still reserved after every reply", used)
	}
	// The refused clients' sessions are in sync: they can send again.
	for i, r := range replies {
		if strings.HasPrefix(r, "452") {
			m := clients[i]
			m.c.run([]step{
				{send: "MAIL FROM:<s@example.org>", expect: "250"},
				{send: "RCPT TO:<again@example.net>", expect: "250"},
				{send: "DATA", expect: "354"},
				{raw: m.body + ".\r\n", expect: "250 2.0.0"},
			})
		}
	}
	if _, bodies := queued(t, q); len(bodies) != len(accepted)+refused {
		t.Errorf("%d messages queued after the retries, want %d", len(bodies), n)
	}
}

// TestMemoryShareLeavesRoom: one submitter (the test's uid on the socket)
// holds its half of the budget (two messages of 250 KiB, 256 KiB each
// reserved) and does not finish them; a message of another submitter (a
// TCP client of another uid) still gets through at once, while one more of the first gets 452 4.3.1
// once its wait is over, and that refusal is logged once.
func TestMemoryShareLeavesRoom(t *testing.T) {
	q := openQueue(t, queue.Options{})
	log, logged := captureLog(t)
	s := startServerWith(t, Options{Queue: q, MaxMessageSize: 256 << 10, MaxMemory: 1 << 20, MemoryWait: 300 * time.Millisecond, Logger: log}, tcpOwnedBy(nobodyUID))
	var hogs []*memClient
	for i := range 2 {
		m := startMemClient(t, s, "unix", i, 300<<10)
		if err := m.send(0, 250<<10); err != nil {
			t.Fatal(err)
		}
		hogs = append(hogs, m)
	}
	key := "uid " + strconv.Itoa(os.Getuid())
	waitFor(t, "the first submitter at its share", func() bool { return s.mem.heldBy(key) == s.mem.share })

	other := startMemClient(t, s, "tcp", 10, 200<<10)
	other.send(0, len(other.body))
	if r, err := other.c.reply(); err != nil || !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("another submitter: %q, %v; want 250 while the first holds its share", r, err)
	}
	for i := range 2 {
		more := startMemClient(t, s, "unix", 11+i, 100<<10)
		more.send(0, len(more.body))
		if r, err := more.c.reply(); err != nil || !strings.HasPrefix(r, "452 4.3.1") {
			t.Errorf("the first submitter's next message: %q, %v; want 452 4.3.1", r, err)
		}
	}
	if n := strings.Count(logged(), "intake memory budget full"); n != 1 {
		t.Errorf("%d refusals logged, want 1 (once a minute per submitter)", n)
	}
	for _, m := range hogs {
		m.c.conn.Close()
	}
	waitFor(t, "the memory released", func() bool { used, _ := s.MemoryInFlight(); return used == 0 })
	if msgs, _ := queued(t, q); len(msgs) != 1 {
		t.Errorf("%d messages queued, want the one acknowledged", len(msgs))
	}
}

// TestMemorySizeAtMail: with no size limit but a budget, a SIZE= at MAIL
// FROM larger than a submitter's share (half the budget) is refused at
// once with 552 5.3.4; one that fits is taken.
func TestMemorySizeAtMail(t *testing.T) {
	s := startServer(t, Options{MaxMemory: 1 << 20})
	c := newClient(t, dial(t, s, "unix"))
	c.run([]step{
		{expect: "220"}, {send: "EHLO c.example", expect: "250"},
		{send: fmt.Sprintf("MAIL FROM:<s@example.org> SIZE=%d", 512<<10+1), expect: "552 5.3.4"},
		{send: fmt.Sprintf("MAIL FROM:<s@example.org> SIZE=%d", 512<<10), expect: "250"},
	})
}
