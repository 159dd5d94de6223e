package transport

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// rateLimiter allows at most limit messages in any window of length delta
// (a sliding window, across every connection of the pool), like the seed's
// rateLimit/rateDelta.
//
// A Send first reserves room (wait), without holding a connection, and
// records the time only when it is about to send MAIL FROM (use), so the
// relay, not relayq's bookkeeping, sees at most limit MAIL commands per
// window however long connecting took. The invariant kept under mu: the
// messages sent in the last delta plus the reservations not yet used
// never exceed limit.
type rateLimiter struct {
	limit int
	delta time.Duration

	// waits counts the reservations that had to wait for room, and
	// waited the time they waited in all (Stats).
	waits  atomic.Uint64
	waited atomic.Int64 // nanoseconds

	mu      sync.Mutex
	sent    []time.Time   // send times within the last delta, oldest first
	pending int           // reservations not yet used or cancelled
	wake    chan struct{} // closed and replaced when room may have appeared
}

// newRateLimiter returns nil (no limit) when limit <= 0.
func newRateLimiter(limit int, delta time.Duration) *rateLimiter {
	if limit <= 0 {
		return nil
	}
	return &rateLimiter{limit: limit, delta: delta, wake: make(chan struct{})}
}

// reservation is room for one message; use or cancel it exactly once
// (further calls do nothing). A nil reservation (no limit) does nothing.
type reservation struct {
	l    *rateLimiter
	done bool
}

// wait reserves room for one message, waiting within ctx until the oldest
// message of the window leaves it.
func (l *rateLimiter) wait(ctx context.Context) (*reservation, error) {
	if l == nil {
		return nil, nil
	}
	var began time.Time // set when the first try finds no room
	defer func() {
		if !began.IsZero() {
			l.waits.Add(1)
			l.waited.Add(int64(time.Since(began)))
		}
	}()
	for {
		l.mu.Lock()
		now := time.Now()
		l.expire(now)
		if len(l.sent)+l.pending < l.limit {
			l.pending++
			l.mu.Unlock()
			return &reservation{l: l}, nil
		}
		if began.IsZero() {
			began = now
		}
		var timer *time.Timer
		var expiry <-chan time.Time // nil: every room is reserved, wait for a use or cancel
		if len(l.sent) > 0 {
			timer = time.NewTimer(l.sent[0].Add(l.delta).Sub(now))
			expiry = timer.C
		}
		wake := l.wake
		l.mu.Unlock()
		var err error
		select {
		case <-expiry:
		case <-wake:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return nil, err
		}
	}
}

// expire forgets the send times that have left the window; l.mu is held.
func (l *rateLimiter) expire(now time.Time) {
	n := 0
	for n < len(l.sent) && !now.Before(l.sent[n].Add(l.delta)) {
		n++
	}
	l.sent = append(l.sent[:0], l.sent[n:]...)
}

// use records that the message is being sent now.
func (r *reservation) use() {
	if r == nil || r.done {
		return
	}
	r.done = true
	l := r.l
	l.mu.Lock()
	l.pending--
	l.sent = append(l.sent, time.Now())
	l.signal() // a waiter with no send time to wait for can now set a timer
	l.mu.Unlock()
}

// cancel gives the room back: the message was not sent.
func (r *reservation) cancel() {
	if r == nil || r.done {
		return
	}
	r.done = true
	l := r.l
	l.mu.Lock()
	l.pending--
	l.signal()
	l.mu.Unlock()
}

// signal wakes the waiters; l.mu is held.
func (l *rateLimiter) signal() {
	close(l.wake)
	l.wake = make(chan struct{})
}
