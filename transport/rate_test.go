package transport

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestRateLimit: 7 messages from 7 concurrent Sends at 3 per 200ms; the
// relay never sees more than 3 MAIL commands in any window. The relay's
// clock reads a little after relayq's decides (more so on a loaded CI
// machine under -race), so windows are checked at 160ms: 40ms of slack
// for scheduling. Without the limit all 7 arrive within milliseconds.
func TestRateLimit(t *testing.T) {
	const (
		limit = 3
		delta = 200 * time.Millisecond
		slack = 40 * time.Millisecond
		n     = 7
	)
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv, func(o *Options) { o.RateLimit, o.RateDelta, o.MaxConnections = limit, delta, 5 })
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := send(t, tr, message("s@example.org", "r@example.net")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Send: %v", err)
	}
	times := srv.MailTimes()
	if len(times) != n {
		t.Fatalf("%d MAIL commands, want %d", len(times), n)
	}
	for i := range times {
		in := 0
		for _, u := range times[i:] {
			if u.Sub(times[i]) < delta-slack {
				in++
			}
		}
		if in > limit {
			t.Errorf("%d MAIL commands within %v of the one at +%v, want at most %d", in, delta-slack, times[i].Sub(times[0]), limit)
		}
	}
	// 7 messages at 3 per window need 2 more windows after the first.
	if span := times[n-1].Sub(times[0]); span < 2*delta-slack {
		t.Errorf("%d messages sent within %v, want at least %v at 3 per %v", n, span, 2*delta, delta)
	}
}

// TestRateLimitWaitRespectsContext: a Send waiting for room gives up with
// its context, sends nothing, and holds no connection meanwhile.
func TestRateLimitWaitRespectsContext(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv, func(o *Options) { o.RateLimit, o.RateDelta, o.MaxConnections = 1, time.Hour, 1 })
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := tr.Send(ctx, message("s@example.org", "r@example.net"))
	if te := wantError(t, err, StageDial, true); !errors.Is(te, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline while waiting for the rate", err)
	}
	if n := len(srv.MailTimes()); n != 1 {
		t.Errorf("%d MAIL commands, want 1", n)
	}
}

// TestRateLimiterCancelGivesRoomBack: a reservation not used (the message
// was refused before MAIL) does not count against the window.
func TestRateLimiterCancelGivesRoomBack(t *testing.T) {
	l := newRateLimiter(1, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := l.wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r2, err := l.wait(ctx)
		r2.use()
		got <- err
	}()
	r.cancel()
	if err := <-got; err != nil {
		t.Fatalf("second reservation after a cancel: %v", err)
	}
	short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
	defer stop()
	if _, err := l.wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("third reservation: %v, want to wait (one message used the window)", err)
	}
	if newRateLimiter(0, time.Second) != nil {
		t.Errorf("a limit of 0 should mean no limiter")
	}
}
