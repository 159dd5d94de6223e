package transport

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

func TestPoolReuse(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true})
	tr := newTransport(t, srv)
	for range 10 {
		mustSend(t, tr, message("s@example.org", "r@example.net"))
	}
	for _, m := range srv.WaitMessages(t, 10, time.Second) {
		if m.Conn != 1 {
			t.Fatalf("message on connection %d, want all 10 on connection 1", m.Conn)
		}
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("%d connections for 10 messages, want 1", n)
	}
	if slices.Contains(srv.Commands(), "RSET") {
		t.Errorf("RSET between successful transactions")
	}
}

func TestPoolMaxConnections(t *testing.T) {
	// A slow relay makes the Sends pile up on the pool.
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Body: smtptest.Times(30, smtptest.Step{Delay: 10 * time.Millisecond}),
	}})
	tr := newTransport(t, srv, func(o *Options) { o.MaxConnections = 3 })
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for range 30 {
		wg.Go(func() {
			if _, err := send(t, tr, message("s@example.org", "r@example.net")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	srv.WaitMessages(t, 30, time.Second)
	if c, m := srv.Connections(), srv.MaxConcurrent(); c != 3 || m != 3 {
		t.Errorf("%d connections, %d at once; want 3 and 3", c, m)
	}
}

func TestPoolWaitRespectsContext(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Hang}}}})
	tr := newTransport(t, srv, func(o *Options) { o.MaxConnections = 1 })
	busy := make(chan error, 1)
	hungCtx, stopHung := context.WithCancel(context.Background())
	defer stopHung()
	go func() {
		_, err := tr.Send(hungCtx, message("s@example.org", "r@example.net"))
		busy <- err
	}()
	waitFor(t, func() bool { return srv.DataAttempts() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := tr.Send(ctx, message("s@example.org", "r@example.net"))
	if te := wantError(t, err, StageDial, true); !errors.Is(te, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline while waiting for a connection", err)
	}
	if srv.Connections() != 1 {
		t.Errorf("%d connections with MaxConnections 1", srv.Connections())
	}
	stopHung()
	if err := <-busy; !errors.Is(err, context.Canceled) {
		t.Errorf("hung Send: %v, want context.Canceled", err)
	}
}

func TestPoolMaxMessages(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv, func(o *Options) { o.MaxMessages = 3 })
	for range 7 {
		mustSend(t, tr, message("s@example.org", "r@example.net"))
	}
	if n := srv.Connections(); n != 3 {
		t.Errorf("%d connections for 7 messages at 3 per connection, want 3", n)
	}
}

func TestPoolIdleCheck(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv, func(o *Options) { o.IdleCheck = time.Nanosecond })
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	if !slices.Contains(srv.Commands(), "NOOP") || srv.Connections() != 1 {
		t.Errorf("commands %q on %d connections; want a NOOP before reuse on one", srv.Commands(), srv.Connections())
	}
	// A failed check means a new connection, not a failed Send.
	srv.SetScript(smtptest.Script{Noop: []smtptest.Step{smtptest.Reply(421, "4.4.2 Idle too long")}})
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	if srv.Connections() != 2 {
		t.Errorf("%d connections, want a second one after the failed NOOP", srv.Connections())
	}
}

// TestPoolStaleConnection: the relay closed a pooled connection without
// the pool noticing; the next Send reconnects instead of failing.
func TestPoolStaleConnection(t *testing.T) {
	for _, step := range []smtptest.Step{{Fault: smtptest.Drop}, smtptest.Reply(421, "4.4.2 Timeout")} {
		srv := smtptest.NewServer(t, smtptest.Options{})
		tr := newTransport(t, srv)
		mustSend(t, tr, message("s@example.org", "r@example.net"))
		srv.SetScript(smtptest.Script{Mail: []smtptest.Step{step}})
		mustSend(t, tr, message("s@example.org", "r@example.net"))
		if srv.Connections() != 2 || len(srv.Messages()) != 2 {
			t.Errorf("MAIL %+v: %d connections, %d messages; want 2 and 2", step, srv.Connections(), len(srv.Messages()))
		}
	}
}

// TestPoolSessionLimit: a relay that takes two messages a session and
// then refuses MAIL with 452 on a session it keeps open (OpenSMTPD's
// max-mails). The Send that meets the limit is made on a new connection
// instead of failing, and the spent one is closed (QUIT), pipelined or
// not. A 4xx to MAIL on a new connection still fails the Send, once.
func TestPoolSessionLimit(t *testing.T) {
	for _, without := range [][]string{nil, {"PIPELINING"}} {
		srv := smtptest.NewServer(t, smtptest.Options{MaxMails: 2, Without: without})
		tr := newTransport(t, srv)
		for range 5 {
			mustSend(t, tr, message("s@example.org", "r@example.net"))
		}
		if n, quits := srv.Connections(), countCommands(srv, "QUIT"); n != 3 || quits != 2 {
			t.Errorf("without %v: %d connections, %d QUIT for 5 messages at 2 a session; want 3 and 2", without, n, quits)
		}
	}
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Mail: []smtptest.Step{smtptest.Reply(451, "4.7.1 Try later")},
	}})
	tr := newTransport(t, srv)
	_, err := send(t, tr, message("s@example.org", "r@example.net"))
	wantError(t, err, StageMail, true)
	if n := len(srv.MailTimes()); n != 1 || srv.Connections() != 1 {
		t.Errorf("a 451 to MAIL on a new connection: %d MAIL on %d connections, want 1 on 1", n, srv.Connections())
	}
}

func TestPoolAfterRefusal(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Mail: []smtptest.Step{smtptest.Reply(553, "5.7.1 Sender rejected")},
		Body: []smtptest.Step{{}, smtptest.Reply(554, "5.7.1 Spam")},
	}})
	tr := newTransport(t, srv)
	_, err := send(t, tr, message("s@example.org", "r@example.net"))
	wantError(t, err, StageMail, false)
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	if srv.Connections() != 1 {
		t.Errorf("refused MAIL: %d connections, want the same one reused after RSET", srv.Connections())
	}
	_, err = send(t, tr, message("s@example.org", "r@example.net"))
	wantError(t, err, StageDot, false)
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	if srv.Connections() != 2 {
		t.Errorf("refused after the dot: %d connections, want a new one", srv.Connections())
	}
}

func TestPoolIdleTimeout(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv, func(o *Options) { o.IdleTimeout = 20 * time.Millisecond })
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	waitFor(t, func() bool { return slices.Contains(srv.Commands(), "QUIT") })
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	if srv.Connections() != 2 {
		t.Errorf("%d connections, want a new one after the idle one was closed", srv.Connections())
	}
}

func TestClose(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv)
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	tr.Close()
	if cmds := srv.Commands(); cmds[len(cmds)-1] != "QUIT" {
		t.Errorf("last command %q, want QUIT from Close", cmds[len(cmds)-1])
	}
	_, err := send(t, tr, message("s@example.org", "r@example.net"))
	if te := wantError(t, err, StageDial, true); !errors.Is(te, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after a second.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within a second")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNoPool: with NoPool every message has its own connection, closed
// with QUIT after it.
func TestNoPool(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv, func(o *Options) { o.NoPool = true })
	for range 3 {
		mustSend(t, tr, message("s@example.org", "r@example.net"))
	}
	msgs := srv.WaitMessages(t, 3, time.Second)
	for i, m := range msgs {
		if m.Conn != i+1 {
			t.Errorf("message %d on connection %d, want %d", i+1, m.Conn, i+1)
		}
	}
	waitFor(t, func() bool { return countCommands(srv, "QUIT") == 3 })
	if n := srv.Connections(); n != 3 {
		t.Errorf("%d connections for 3 messages without a pool, want 3", n)
	}
}

// TestPoolRelayClosedIdle: the relay closed an idle pooled connection (its
// own idle timeout, a restart); the next message goes out on a new
// connection instead of failing, whether the NOOP check or MAIL finds out.
func TestPoolRelayClosedIdle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check time.Duration
	}{{"found by NOOP", time.Nanosecond}, {"found by MAIL", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{})
			tr := newTransport(t, srv, func(o *Options) { o.IdleCheck = tc.check })
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			srv.CloseConnections()
			mustSend(t, tr, message("s@example.org", "r@example.net"))
			msgs := srv.WaitMessages(t, 2, time.Second)
			if srv.Connections() != 2 || msgs[1].Conn != 2 {
				t.Errorf("%d connections, second message on %d; want it on a second connection", srv.Connections(), msgs[1].Conn)
			}
		})
	}
}

// TestPoolManySendersNeverExceedMax: far more concurrent Sends than
// connections; the relay never sees more than MaxConnections at once and
// every message arrives.
func TestPoolManySendersNeverExceedMax(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Mail: smtptest.Times(60, smtptest.Step{Delay: 2 * time.Millisecond}),
	}})
	tr := newTransport(t, srv, func(o *Options) { o.MaxConnections = 4; o.MaxMessages = 5 })
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for range 60 {
		wg.Go(func() {
			if _, err := send(t, tr, message("s@example.org", "r@example.net")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	srv.WaitMessages(t, 60, time.Second)
	if m := srv.MaxConcurrent(); m > 4 {
		t.Errorf("%d connections open at once, want at most 4", m)
	}
	if c := srv.Connections(); c < 12 {
		t.Errorf("%d connections for 60 messages at 5 per connection, want at least 12", c)
	}
}

func countCommands(srv *smtptest.Server, verb string) int {
	n := 0
	for _, c := range srv.Commands() {
		if c == verb {
			n++
		}
	}
	return n
}

// TestPoolWakesOneWaiterPerFreedConnection: Sends piled up on a pool of
// one connection are woken one at a time as it frees up, not all of them
// for each message (which sent all but one back to wait: with delivery's
// 32 workers on 5 connections, 11 wake-ups a message).
func TestPoolWakesOneWaiterPerFreedConnection(t *testing.T) {
	const n = 10
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Body: smtptest.Times(n, smtptest.Step{Delay: 10 * time.Millisecond}),
	}})
	tr := newTransport(t, srv, func(o *Options) { o.MaxConnections = 1 })
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := send(t, tr, message("s@example.org", "r@example.net")); err != nil {
				t.Errorf("Send: %v", err)
			}
		})
	}
	wg.Wait()
	srv.WaitMessages(t, n, time.Second)
	// One wake-up per release at most: n-1 waiters, one connection.
	if w := tr.woken.Load(); w > n {
		t.Errorf("%d wake-ups for %d Sends on one connection, want at most %d", w, n, n)
	}
}

// TestPoolWaiterGivingUpPassesItsWakeOn: a waiting Send whose context ends
// just as a connection frees up for it hands that wake-up to the next
// waiter, which would otherwise wait for a connection that sits idle; one
// that gives up before its turn wakes nobody.
func TestPoolWaiterGivingUpPassesItsWakeOn(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv)
	first, second, third := make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}, 1)
	tr.mu.Lock()
	tr.waiting = append(tr.waiting, first, second, third)
	tr.signal() // a connection frees up: first's turn
	tr.mu.Unlock()
	tr.giveUp(first) // first's context ended meanwhile
	select {
	case <-second:
	default:
		t.Fatal("the wake-up first gave up did not pass to second")
	}
	tr.giveUp(third) // not woken: leaves the line quietly
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.waiting) != 0 || len(third) != 0 {
		t.Errorf("after both gave up: %d still waiting, third woken %v", len(tr.waiting), len(third) != 0)
	}
}

// TestCloseWakesEveryWaiter: Close ends every Send waiting for a
// connection with ErrClosed, not only the first in line.
func TestCloseWakesEveryWaiter(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Hang}}}})
	tr := newTransport(t, srv, func(o *Options) { o.MaxConnections = 1 })
	hungCtx, stopHung := context.WithCancel(context.Background())
	defer stopHung()
	go tr.Send(hungCtx, message("s@example.org", "r@example.net"))
	waitFor(t, func() bool { return srv.DataAttempts() == 1 })
	const waiters = 3
	errs := make(chan error, waiters)
	for range waiters {
		go func() {
			_, err := tr.Send(context.Background(), message("s@example.org", "r@example.net"))
			errs <- err
		}()
	}
	waitFor(t, func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return len(tr.waiting) == waiters })
	tr.Close()
	for i := range waiters {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("a Send waiting at Close: %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d Sends waiting at Close still wait", waiters-i, waiters)
		}
	}
}
