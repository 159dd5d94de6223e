package transport

import (
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestStats: the pool's connections show as open and idle, and a Send
// that found the rate window full counts as a wait.
func TestStats(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	tr := newTransport(t, srv, func(o *Options) { o.RateLimit, o.RateDelta = 1, 500*time.Millisecond })
	if s := tr.Stats(); s != (Stats{}) {
		t.Fatalf("before any Send: %+v, want zero", s)
	}
	mustSend(t, tr, message("s@example.org", "r@example.net"))
	if s := tr.Stats(); s.Open != 1 || s.Idle != 1 || s.RateWaits != 0 {
		t.Errorf("after one Send: %+v, want 1 open, 1 idle, no rate wait", s)
	}
	mustSend(t, tr, message("s@example.org", "r@example.net")) // within the window: waits
	s := tr.Stats()
	if s.RateWaits != 1 || s.RateWaited <= 0 {
		t.Errorf("after a second Send in the window: %+v, want 1 rate wait of some time", s)
	}
	tr.Close()
	if s := tr.Stats(); s.Open != 0 || s.Idle != 0 {
		t.Errorf("after Close: %+v, want nothing open", s)
	}
}
