package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"relayq/config"
)

// The watchdog's check: a delivery loop that has not gone round within its
// bound, or a committer that does not answer, stops the pings; a read
// that answers late counts at the next check.
func TestWatchdogLiveness(t *testing.T) {
	now := time.Unix(1000, 0)
	tick := now.Add(-time.Minute)
	answer := make(chan error)
	l := &liveness{
		lastTick: func() time.Time { return tick },
		bound:    2 * time.Minute,
		ping:     func() error { return <-answer },
		wait:     20 * time.Millisecond,
		now:      func() time.Time { return now },
	}
	if err := l.check(); err == nil || !strings.Contains(err.Error(), "committer") {
		t.Fatalf("committer wedged: %v, want an error naming the committer", err)
	}
	if err := l.check(); err == nil {
		t.Fatal("committer still wedged: check passed")
	}
	go func() { answer <- nil }() // the same read answers at last
	waitUntil(t, func() bool { return l.check() == nil })
	if l.pending != nil {
		t.Error("a read is still pending after it answered")
	}

	now = now.Add(2 * time.Minute) // the loop last went round 3 minutes ago
	if err := l.check(); err == nil || !strings.Contains(err.Error(), "delivery loop stuck") {
		t.Fatalf("delivery stuck: %v, want an error naming the delivery loop", err)
	}
	l.lastTick = func() time.Time { return now }
	go func() { answer <- errors.New("queue: closed") }()
	if err := l.check(); err == nil {
		t.Fatal("a failed read passed the check")
	}
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The watchdog pings after each check that passes, and not after one that
// fails.
func TestWatchdogStopsPinging(t *testing.T) {
	wedged := errors.New("wedged")
	results := []error{nil, nil, wedged, wedged, nil}
	var events []string
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := watchdog{every: time.Millisecond, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		check: func() error {
			if n == len(results) { // a tick that raced the cancel
				return wedged
			}
			err := results[n]
			events = append(events, "check")
			if n++; n == len(results) {
				cancel()
			}
			return err
		},
		ping: func() { events = append(events, "ping") }}
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	<-done
	if got, want := strings.Join(events, " "), "check ping check ping check check check ping"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
}

// Inherited sockets are matched to the config by address.
func TestConfigAddress(t *testing.T) {
	s := config.SubmissionConfig{Socket: "/run/relayq/submit.sock", Listen: []string{"127.0.0.1:25", "[::1]:2525"}}
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.UnixAddr{Name: "/run/relayq/submit.sock", Net: "unix"}, "/run/relayq/submit.sock"},
		{&net.UnixAddr{Name: "/run/other.sock", Net: "unix"}, ""},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25}, "127.0.0.1:25"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 2525}, "[::1]:2525"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2525}, ""},
	}
	for _, tc := range tests {
		if got := configAddress(s, tc.addr); got != tc.want {
			t.Errorf("configAddress(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
