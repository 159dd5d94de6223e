package delivery

import (
	"strings"
	"testing"
	"time"

	"relayq/queue"
	"relayq/route"
)

// TestGroupsByRoute: a message's pending recipients split by route, each
// address once, in the order of their first recipient; done recipients
// are left out.
func TestGroupsByRoute(t *testing.T) {
	table, err := route.New(route.Options{
		Rules:   []route.Rule{{Name: "org", RecipientDomain: "example.org", Relays: []string{"b"}}},
		Default: []string{"a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &queue.Message{From: "app@example.com", Recipients: []queue.Recipient{
		{Address: "x@example.net", Status: queue.StatusQueued},
		{Address: "y@example.org", Status: queue.StatusDeferred},
		{Address: "z@example.net", Status: queue.StatusDelivered},
		{Address: "w@example.net", Status: queue.StatusQueued},
		{Address: "y@example.org", Status: queue.StatusQueued},
	}}
	got := groups(m, table)
	if len(got) != 2 || got[0].route.Name != route.DefaultName || got[1].route.Name != "org" ||
		len(got[0].rcpts) != 2 || got[0].rcpts[1] != "w@example.net" || len(got[1].rcpts) != 1 {
		t.Fatalf("groups: %+v", got)
	}
}

// TestOneProbeAtATime: while a relay is paused nothing goes; once the
// pause is over one attempt probes and the others are told to come back
// later; a success opens the relay to all.
func TestOneProbeAtATime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := newRelayPause(time.Second, time.Minute)
	if ok, probe, _ := p.acquire(now); !ok || probe {
		t.Fatal("a relay that never failed is not open")
	}
	p.failed(now, false)
	if ok, _, retry := p.acquire(now); ok || !retry.Equal(now.Add(time.Second)) {
		t.Fatalf("paused relay: ok %v, retry %v", ok, retry)
	}
	now = now.Add(time.Second)
	if ok, probe, _ := p.acquire(now); !ok || !probe {
		t.Fatal("no probe after the pause")
	}
	if ok, _, retry := p.acquire(now); ok || !retry.After(now) {
		t.Fatal("a second attempt went out while the probe is out")
	}
	p.endProbe()
	p.succeeded()
	for range 3 {
		if ok, probe, _ := p.acquire(now); !ok || probe {
			t.Fatal("the relay is not open after a success")
		}
	}
}

// TestWaitingKeepsTheLifetime: a recipient waiting for its relays waits
// until the relay may be probed, never past the message's lifetime; once
// the lifetime is over it dies, expired, with its last reply, as a
// deferred one would.
func TestWaitingKeepsTheLifetime(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := created.Add(time.Hour)
	d := New(Options{Relay: "r", Now: func() time.Time { return now }})
	relay := Relay{Retry: RetryPolicy{MaxLifetime: 2 * time.Hour}.withDefaults()}
	last := &queue.Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{"down"}}
	m := &queue.Message{Created: created, Recipients: []queue.Recipient{{Address: "a@x.example", Status: queue.StatusDeferred, LastReply: last}}}
	waiting := map[string]verdict{"a@x.example": {result: queue.Waiting}}

	out := d.outcomes(m, waiting, "r", now.Add(time.Minute), relay)
	if len(out) != 1 || out[0].Result != queue.Waiting || !out[0].NextAttempt.Equal(now.Add(time.Minute)) {
		t.Fatalf("waiting within the lifetime: %+v", out)
	}
	out = d.outcomes(m, waiting, "r", now.Add(3*time.Hour), relay)
	if !out[0].NextAttempt.Equal(created.Add(2 * time.Hour)) {
		t.Errorf("a wait past the lifetime ends at %v, want the deadline", out[0].NextAttempt)
	}
	now = created.Add(2 * time.Hour)
	out = d.outcomes(m, waiting, "r", now.Add(time.Minute), relay)
	if out[0].Result != queue.Failed || out[0].Reply.Code != 421 || !strings.Contains(out[0].Reply.String(), "expired") {
		t.Errorf("waiting past the lifetime: %+v (%v), want dead, expired, with the last reply", out[0], out[0].Reply)
	}
}
