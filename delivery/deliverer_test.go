package delivery

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/queue"
	"relayq/transport"
	"relayq/transport/smtptest"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rig struct {
	q      *queue.Queue
	d      *Deliverer
	relay  *smtptest.Server
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs a Deliverer over a fresh queue towards a scripted relay, with
// retry intervals short enough for a test.
func start(t *testing.T, relay smtptest.Options, retry RetryPolicy, shutdown time.Duration) *rig {
	t.Helper()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return startOn(t, q, relay, retry, shutdown)
}

// startOn is start over the queue q, which it closes at the end.
func startOn(t *testing.T, q *queue.Queue, relay smtptest.Options, retry RetryPolicy, shutdown time.Duration) *rig {
	t.Helper()
	r := &rig{q: q, relay: smtptest.NewServer(t, relay), logs: &syncBuffer{}, done: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(r.logs, nil))
	tr := transport.New(transport.Options{
		Network: r.relay.Network(), Address: r.relay.Addr(), LMTP: relay.LMTP, IgnoreTLS: true,
		CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second, Logger: log,
	})
	if retry.InitialInterval == 0 {
		retry = RetryPolicy{InitialInterval: 30 * time.Millisecond, Multiplier: 2, MaxInterval: 200 * time.Millisecond, MaxLifetime: time.Hour}
	}
	d := New(Options{Queue: q, Transport: tr, Relay: "test", Workers: 3, Retry: retry, ShutdownTimeout: shutdown, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.d = cancel, d
	go func() {
		defer close(r.done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() {
		r.stop()
		tr.Close()
		for _, p := range r.q.Check() { // r.q: a test may have opened it again
			t.Errorf("integrity: %v", p)
		}
		r.q.Close()
		if t.Failed() {
			t.Log(r.logs.String())
		}
	})
	return r
}

func (r *rig) stop() {
	r.cancel()
	<-r.done
}

func (r *rig) put(t *testing.T, body string, rcpts ...string) string {
	t.Helper()
	id, err := r.q.Put(context.Background(), queue.Envelope{From: "cron@here.example", Recipients: rcpts}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) emptied(t *testing.T) {
	t.Helper()
	waitFor(t, "the queue to empty", func() bool {
		c, _ := r.q.Count()
		return c.Messages == 0
	})
}

func TestDeliversEveryMessageExactly(t *testing.T) {
	r := start(t, smtptest.Options{}, RetryPolicy{}, 0)
	bodies := map[string]bool{}
	for i := range 20 {
		body := "Subject: n" + strings.Repeat("x", i) + "\r\n\r\nline\r\n.leading dot\r\n"
		bodies[body] = true
		r.put(t, body, "a@there.example", "b@there.example")
	}
	got := r.relay.WaitMessages(t, 20, 10*time.Second)
	for _, m := range got {
		if !bodies[string(m.Body)] || m.From != "cron@here.example" || len(m.To) != 2 {
			t.Fatalf("relay got %q from %q to %v", m.Body, m.From, m.To)
		}
	}
	r.emptied(t)
	if c, _ := r.q.Count(); c.Dead != 0 {
		t.Fatalf("dead letters: %d", c.Dead)
	}
}

func TestTemporaryFailuresAreRetriedWithGrowingDelays(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Body: smtptest.Times(2, smtptest.Reply(451, "4.3.0 try later")),
	}}, RetryPolicy{}, 0)
	r.put(t, "x\r\n", "a@there.example")
	r.relay.WaitMessages(t, 1, 10*time.Second)
	r.emptied(t)
	if n := r.relay.DataAttempts(); n != 3 {
		t.Fatalf("relay saw %d attempts, want 3", n)
	}
	// The status line is written just after the outcome is recorded.
	waitFor(t, "the sent line in the log", func() bool { return strings.Contains(r.logs.String(), "status=sent") })
	logs := r.logs.String()
	if strings.Count(logs, "status=deferred") != 2 || strings.Count(logs, "status=sent") != 1 {
		t.Fatalf("log lines:\n%s", logs)
	}
	if !strings.Contains(logs, `reply="451 4.3.0 try later (in reply to dot)"`) {
		t.Fatalf("the 451 text is not in the log:\n%s", logs)
	}
}

func TestPermanentFailureDeadLettersOnlyThatRecipient(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"gone@there.example": {smtptest.Reply(550, "5.1.1 no such user")}},
	}}, RetryPolicy{}, 0)
	id := r.put(t, "x\r\n", "a@there.example", "gone@there.example", "b@there.example")
	got := r.relay.WaitMessages(t, 1, 10*time.Second)
	if len(got[0].To) != 2 {
		t.Fatalf("relay got recipients %v", got[0].To)
	}
	r.emptied(t)
	dead, _ := r.q.ListDead()
	if len(dead) != 1 || dead[0].ID != id || len(dead[0].Recipients) != 1 {
		t.Fatalf("dead letters %+v", dead)
	}
	d := dead[0].Recipients[0]
	if d.Address != "gone@there.example" || d.LastReply.Code != 550 || d.LastReply.Enhanced != "5.1.1" || !strings.Contains(d.LastReply.String(), "no such user") {
		t.Fatalf("dead recipient %+v reply %v", d, d.LastReply)
	}
	if n := r.relay.DataAttempts(); n != 1 {
		t.Fatalf("relay saw %d DATA attempts, want 1", n)
	}
}

func TestLMTPPerRecipientReplies(t *testing.T) {
	r := start(t, smtptest.Options{LMTP: true, Script: smtptest.Script{
		LMTP: map[string][]smtptest.Step{
			"full@there.example": {smtptest.Reply(452, "4.2.2 mailbox full")},
			"gone@there.example": {smtptest.Reply(550, "5.1.1 no such user")},
		},
	}}, RetryPolicy{}, 0)
	r.put(t, "x\r\n", "ok@there.example", "full@there.example", "gone@there.example")
	waitFor(t, "the full mailbox to be retried and delivered", func() bool {
		c, _ := r.q.Count()
		return c.Messages == 0 && c.Dead == 1
	})
	dead, _ := r.q.ListDead()
	if len(dead[0].Recipients) != 1 || dead[0].Recipients[0].Address != "gone@there.example" {
		t.Fatalf("dead %+v", dead[0].Recipients)
	}
	// ok@ once, full@ on its second try; never gone@.
	var delivered []string
	for _, m := range r.relay.Messages() {
		delivered = append(delivered, m.To...)
	}
	if strings.Join(delivered, ",") != "ok@there.example,full@there.example" {
		t.Fatalf("delivered to %v", delivered)
	}
}

func TestRelayDownDefersNeverKills(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Greeting: smtptest.Times(2, smtptest.Reply(554, "5.3.2 not now")),
	}}, RetryPolicy{}, 0)
	r.put(t, "x\r\n", "a@there.example")
	r.relay.WaitMessages(t, 1, 10*time.Second)
	r.emptied(t)
	if c, _ := r.q.Count(); c.Dead != 0 {
		t.Fatal("a relay-side failure dead-lettered a message")
	}
}

func TestExpiredMessageIsDeadLetteredWithLastReply(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Body: smtptest.Times(1000, smtptest.Reply(451, "4.3.0 still broken")),
	}}, RetryPolicy{InitialInterval: 20 * time.Millisecond, MaxInterval: 50 * time.Millisecond, MaxLifetime: 300 * time.Millisecond}, 0)
	r.put(t, "x\r\n", "a@there.example")
	waitFor(t, "expiry", func() bool {
		c, _ := r.q.Count()
		return c.Dead == 1 && c.Messages == 0
	})
	dead, _ := r.q.ListDead()
	reply := dead[0].Recipients[0].LastReply.String()
	if !strings.Contains(reply, "expired") || !strings.Contains(reply, "still broken") {
		t.Fatalf("expiry reply %q", reply)
	}
}

func TestDropMidDataIsRetried(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Body: []smtptest.Step{{Fault: smtptest.Drop, AfterBytes: 10}},
	}}, RetryPolicy{}, 0)
	body := "Subject: long\r\n\r\n" + strings.Repeat("0123456789", 100) + "\r\n"
	r.put(t, body, "a@there.example")
	got := r.relay.WaitMessages(t, 1, 10*time.Second)
	if string(got[0].Body) != body {
		t.Fatal("body differs after retry")
	}
	r.emptied(t)
}

func TestDropAfterDotIsRetriedAndLoggedAsPossibleDuplicate(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Body: []smtptest.Step{{Fault: smtptest.Drop}},
	}}, RetryPolicy{}, 0)
	r.put(t, "x\r\n", "a@there.example")
	r.relay.WaitMessages(t, 1, 10*time.Second)
	r.emptied(t)
	if !strings.Contains(r.logs.String(), "possible_duplicate=true") {
		t.Fatalf("no possible-duplicate log line:\n%s", r.logs.String())
	}
}

func TestShutdownGivesBackLeasesOfCutShortAttempts(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Body: []smtptest.Step{{Fault: smtptest.Hang}},
	}}, RetryPolicy{}, 100*time.Millisecond)
	id := r.put(t, "x\r\n", "a@there.example")
	waitFor(t, "the attempt to start", func() bool { return r.relay.DataAttempts() == 1 })
	r.stop()
	m, err := r.q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !m.LeasedUntil.IsZero() || m.Attempts != 0 {
		t.Fatalf("after shutdown: leased until %v, attempts %d", m.LeasedUntil, m.Attempts)
	}
	body, _ := io.ReadAll(r.q.Body(id))
	if string(body) != "x\r\n" {
		t.Fatalf("body %q", body)
	}
}

func TestBrokenRelaySeesProbesNotAFlood(t *testing.T) {
	r := start(t, smtptest.Options{Script: smtptest.Script{
		Greeting: smtptest.Times(1000, smtptest.Reply(421, "4.3.2 shutting down")),
	}}, RetryPolicy{InitialInterval: 200 * time.Millisecond, MaxInterval: time.Second, MaxLifetime: time.Hour}, 0)
	for range 30 {
		r.put(t, "x\r\n", "a@there.example")
	}
	waitFor(t, "a few probes", func() bool { return r.relay.Connections() >= 4 })
	time.Sleep(300 * time.Millisecond) // let any flood show itself
	if n := r.relay.Connections(); n > 8 {
		t.Fatalf("a broken relay got %d connections for 30 queued messages", n)
	}
	r.relay.SetScript(smtptest.Script{})
	r.relay.WaitMessages(t, 30, 20*time.Second)
}
