package delivery

import (
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// The dispatch loop marks each round, while it delivers and while it is
// idle: an idle loop still goes round within the bound it reports.
func TestLastTick(t *testing.T) {
	r := start(t, smtptest.Options{}, RetryPolicy{}, time.Second)
	waitFor(t, "a first tick", func() bool { return !r.d.LastTick().IsZero() })
	r.put(t, "Subject: x\r\n\r\nbody\r\n", "a@example.net")
	r.emptied(t)
	first := r.d.LastTick()
	r.put(t, "Subject: y\r\n\r\nbody\r\n", "b@example.net")
	waitFor(t, "a tick after a new message", func() bool { return r.d.LastTick().After(first) })
	if got, want := r.d.TickBound(), r.d.opts.AttemptTimeout+r.d.opts.Retry.InitialInterval+maxIdleWait; got != want {
		t.Errorf("TickBound %v, want %v", got, want)
	}
	if d := New(Options{}); !d.LastTick().IsZero() {
		t.Errorf("LastTick before Run: %v, want zero", d.LastTick())
	}
}
