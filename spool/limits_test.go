package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/queue"
)

// testClock is a settable clock for the limiter.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// limitedServer starts a server with limits whose limiter runs on a test
// clock.
func limitedServer(t *testing.T, l Limits) (*Server, *testClock) {
	t.Helper()
	return limitedServerWith(t, l, nil)
}

// limitedServerWith is limitedServer with setup as in startServerWith.
func limitedServerWith(t *testing.T, l Limits, setup func(*Server)) (*Server, *testClock) {
	t.Helper()
	s := startServerWith(t, Options{Limits: l}, setup)
	clock := &testClock{now: time.Now()}
	s.limits.Load().now = clock.Now
	return s, clock
}

const limitBody = "Subject: x\r\n\r\nhello\r\n.\r\n" // 21 bytes, and the headers the intake adds

// stampedSize is the size limitBody is queued with, once the intake has
// added its headers, when sent after hello over via by uid (-1: unknown).
func stampedSize(via string, uid int) int64 {
	sub := queue.Submitter{Via: via, UID: uid, Addr: "127.0.0.1:1"}
	msg := []byte(strings.TrimSuffix(limitBody, ".\r\n"))
	st := stamp{id: strings.Repeat("0", 20), hostname: "relayq.test", helo: "client.test", with: "ESMTP", submitter: sub, now: time.Now()}
	return int64(len(stampMessage(nil, msg, st)))
}

// TestLimitMessagesPerHour: a uid may send two messages an hour; the third
// MAIL FROM gets 452 4.7.0, over TCP too (the client's socket is the same
// uid's: one count), while another uid's TCP client (nobody, when the test
// runs as root) still gets through; an hour later the uid may send again.
func TestLimitMessagesPerHour(t *testing.T) {
	s, clock := limitedServer(t, Limits{Default: Limit{MessagesPerHour: 2}})
	over := "452 4.7.0 Too many messages from uid " + strconv.Itoa(os.Getuid()) + ": limit 2 an hour"
	c := newClient(t, dial(t, s, "unix"))
	c.run(dialog(hello, transaction(limitBody, queuedReply), transaction(limitBody, queuedReply), []step{
		{send: "MAIL FROM:<cron@example.org>", expect: over},
		{send: "RSET", expect: "250"},
	}))
	tcp := newClient(t, dial(t, s, "tcp"))
	tcp.run(dialog(hello, []step{{send: "MAIL FROM:<cron@example.org>", expect: over}, {send: "RSET", expect: "250"}}))
	want := 3
	if os.Geteuid() == 0 {
		other := newClient(t, dialFrom(t, nobodyUID, nil, tcpAddr(t, s)))
		other.run(dialog(hello, transaction(limitBody, queuedReply)))
		want++
	}

	clock.advance(59 * time.Minute)
	c.run([]step{{send: "MAIL FROM:<cron@example.org>", expect: "452 4.7.0"}, {send: "RSET", expect: "250"}})
	clock.advance(2 * time.Minute)
	c.run(transaction(limitBody, queuedReply))
	if msgs, _ := queued(t, s.opts.Queue); len(msgs) != want {
		t.Errorf("%d messages queued, want %d", len(msgs), want)
	}
}

// TestLimitQueuedBytes: a uid may have one and a half messages queued.
// One message is taken; a second with SIZE is refused at MAIL FROM, one
// without SIZE at the end of DATA; one larger than the whole allowance gets
// a permanent 552. Once the first message has left the queue, and the
// figures were read again, the uid may send again.
func TestLimitQueuedBytes(t *testing.T) {
	size := stampedSize(viaSocket, os.Getuid())
	limit := size + size/2
	s, clock := limitedServer(t, Limits{Default: Limit{QueuedBytes: limit}})
	c := newClient(t, dial(t, s, "unix"))
	c.run(dialog(hello, transaction(limitBody, queuedReply), []step{
		{send: fmt.Sprintf("MAIL FROM:<cron@example.org> SIZE=%d", size), expect: "452 4.7.0 Too much mail queued from uid"},
		{send: fmt.Sprintf("MAIL FROM:<cron@example.org> SIZE=%d", limit+1), expect: "552 5.3.4"},
		{send: "MAIL FROM:<cron@example.org>", expect: "250"},
		{send: "RCPT TO:<root@example.org>", expect: "250"},
		{send: "DATA", expect: "354"},
		{raw: "Subject: x\r\n\r\n" + strings.Repeat("y", 20) + "\r\n.\r\n", expect: "452 4.7.0"},
	}))
	msgs, _ := queued(t, s.opts.Queue)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
	if _, err := s.opts.Queue.Delete([]string{msgs[0].ID}); err != nil {
		t.Fatal(err)
	}
	c.run([]step{{send: fmt.Sprintf("MAIL FROM:<cron@example.org> SIZE=%d", size), expect: "452 4.7.0"}}) // not read again yet
	clock.advance(bytesRefresh)
	c.run(dialog([]step{{send: "RSET", expect: "250"}}, transaction(limitBody, queuedReply)))
}

// TestLimitKey: which count a submission falls under.
func TestLimitKey(t *testing.T) {
	l := newLimiter(Limits{
		Default: Limit{MessagesPerHour: 1},
		Rules: []LimitRule{
			{Kind: LimitUID, Value: "1000", Limit: Limit{MessagesPerHour: 10}},
			{Kind: LimitUser, Value: "www-data", Limit: Limit{MessagesPerHour: 20}},
			{Kind: LimitUnit, Value: "cron.service", Limit: Limit{MessagesPerHour: 30}},
		},
	}, nil, nil)
	tests := []struct {
		sub  queue.Submitter
		key  string
		rate int
	}{
		{queue.Submitter{UID: 1000}, "uid 1000", 10},
		{queue.Submitter{UID: 1000, User: "alice", Unit: "session-2.scope"}, "uid 1000", 10},
		{queue.Submitter{UID: 1000, Unit: "cron.service"}, "unit cron.service", 30},
		{queue.Submitter{UID: 33, User: "www-data"}, "user www-data", 20},
		{queue.Submitter{UID: 33, User: "www-data", Unit: "cron.service"}, "unit cron.service", 30},
		{queue.Submitter{UID: 1001, User: "bob"}, "uid 1001", 1},
		{queue.Submitter{UID: -1, Via: "tcp"}, "uid -1", 1},
	}
	for _, tt := range tests {
		key, lim := l.keyFor(tt.sub)
		if key != tt.key || lim.MessagesPerHour != tt.rate {
			t.Errorf("keyFor(%+v) = %q, %d/h; want %q, %d/h", tt.sub, key, lim.MessagesPerHour, tt.key, tt.rate)
		}
	}
	if newLimiter(Limits{Rules: []LimitRule{{Kind: LimitUID, Value: "0"}}}, nil, nil) != nil {
		t.Error("limits that limit nothing should give no limiter")
	}
}

// TestLimitSurvivesRestart: the hourly count of a new limiter (a restart)
// starts from the messages of the last hour still in the store, and the
// queued bytes are the store's.
func TestLimitSurvivesRestart(t *testing.T) {
	q := openQueue(t, queue.Options{})
	sub := queue.Submitter{UID: 1000, Via: "socket"}
	for range 2 {
		if _, err := q.Put(context.Background(), queue.Envelope{From: "a@example.org", Recipients: []string{"b@example.org"}, Submitter: sub}, []byte("0123456789")); err != nil {
			t.Fatal(err)
		}
	}
	rate := newLimiter(Limits{Default: Limit{MessagesPerHour: 2}}, q, testLogger(t))
	if r := rate.check(sub, 0); r == nil || r.Code != 452 {
		t.Errorf("rate after restart: %v, want 452", r)
	}
	if r := rate.check(queue.Submitter{UID: 1001}, 0); r != nil {
		t.Errorf("another uid: %v, want accepted", r)
	}
	bytes := newLimiter(Limits{Default: Limit{QueuedBytes: 25}}, q, testLogger(t))
	if r := bytes.check(sub, 5); r != nil {
		t.Errorf("20 bytes queued + 5: %v, want accepted", r)
	}
	if r := bytes.check(sub, 6); r == nil || r.Code != 452 {
		t.Errorf("20 bytes queued + 6: %v, want 452", r)
	}
}

// TestLimitConcurrentAdmit: sessions that reach the end of DATA together
// cannot all slip under the limit.
func TestLimitConcurrentAdmit(t *testing.T) {
	q := openQueue(t, queue.Options{})
	l := newLimiter(Limits{Default: Limit{MessagesPerHour: 5}}, q, testLogger(t))
	sub := queue.Submitter{UID: 1000}
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for range 20 {
		wg.Go(func() {
			if done, r := l.admit(sub, 10); r == nil {
				done(true)
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 5 {
		t.Errorf("%d admitted, want 5", admitted)
	}
	// A Put that failed gives its slot back.
	l2 := newLimiter(Limits{Default: Limit{MessagesPerHour: 1}}, q, testLogger(t))
	done, r := l2.admit(sub, 10)
	if r != nil {
		t.Fatal(r)
	}
	done(false)
	if _, r := l2.admit(sub, 10); r != nil {
		t.Errorf("after a failed Put: %v, want admitted", r)
	}
}

// TestLimitUsage: what status shows. The uid with a rule of 2 messages an
// hour sent 2 and was refused once; TCP submissions whose owner cannot be
// looked up (netlink refused), under the default (50 queued bytes), have
// one message queued; every rule is listed, idle or not, sorted by key.
func TestLimitUsage(t *testing.T) {
	uid := strconv.Itoa(os.Getuid())
	unix, tcp := stampedSize(viaSocket, os.Getuid()), stampedSize(viaTCP, -1)
	s, clock := limitedServerWith(t, Limits{
		Default: Limit{QueuedBytes: 3 * tcp},
		Rules: []LimitRule{
			{Kind: LimitUID, Value: uid, Limit: Limit{MessagesPerHour: 2}},
			{Kind: LimitUnit, Value: "idle.service", Limit: Limit{MessagesPerHour: 7}},
		},
	}, tcpOwnerUnknown(errors.New("netlink refused (test)")))
	if u := s.LimitUsage(); len(u) != 2 || u[0].Key != "uid "+uid || u[1].Key != "unit idle.service" || u[1].MessagesPerHour != 7 || u[0].Refused != 0 {
		t.Fatalf("before any mail: %+v, want the two rules, idle", u)
	}
	c := newClient(t, dial(t, s, "unix"))
	c.run(dialog(hello, transaction(limitBody, queuedReply), transaction(limitBody, queuedReply), []step{
		{send: "MAIL FROM:<cron@example.org>", expect: "452 4.7.0"},
		{send: "RSET", expect: "250"},
	}))
	tc := newClient(t, dial(t, s, "tcp"))
	tc.run(dialog(hello, transaction(limitBody, queuedReply)))

	got := map[string]LimitUsage{}
	for _, u := range s.LimitUsage() {
		got[u.Key] = u
	}
	if u := got["uid "+uid]; u.MessagesPerHour != 2 || u.MessagesLastHour != 2 || u.Refused != 1 || !u.LastRefused.Equal(clock.Now()) || u.QueuedBytes != 2*unix {
		t.Errorf("uid %s: %+v, want 2 of 2 messages, %d bytes queued, 1 refused now", uid, u, 2*unix)
	}
	if u := got["TCP submissions"]; u.QueuedBytes != tcp || u.Limit.QueuedBytes != 3*tcp || u.Refused != 0 {
		t.Errorf("TCP submissions: %+v, want %d of %d bytes queued", u, tcp, 3*tcp)
	}
	if len(got) != 3 {
		t.Errorf("usage: %+v, want the uid, TCP submissions and the idle unit", got)
	}

	clock.advance(61 * time.Minute)
	for _, u := range s.LimitUsage() {
		if u.Key == "uid "+uid && (u.MessagesLastHour != 0 || u.Refused != 1) {
			t.Errorf("an hour later: %+v, want 0 messages in the last hour and the refusal still counted", u)
		}
	}
}

// TestSetLimitsKeepsCounts: a reload raises the hourly limit from 2 to 3.
// The uid that had sent its 2 may send one more, not 3 more: the count of
// the last hour survives the reload. A reload that removes every limit
// lets it send again.
func TestSetLimitsKeepsCounts(t *testing.T) {
	s, _ := limitedServer(t, Limits{Default: Limit{MessagesPerHour: 2}})
	c := newClient(t, dial(t, s, "unix"))
	refused := []step{{send: "MAIL FROM:<cron@example.org>", expect: "452 4.7.0"}, {send: "RSET", expect: "250"}}
	c.run(dialog(hello, transaction(limitBody, queuedReply), transaction(limitBody, queuedReply), refused))

	s.SetLimits(Limits{Default: Limit{MessagesPerHour: 3}})
	c.run(transaction(limitBody, queuedReply))
	c.run(refused)

	s.SetLimits(Limits{})
	c.run(transaction(limitBody, queuedReply))
	if msgs, _ := queued(t, s.opts.Queue); len(msgs) != 4 {
		t.Errorf("%d messages queued, want 4", len(msgs))
	}
}
