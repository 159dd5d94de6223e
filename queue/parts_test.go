package queue

import (
	"testing"
	"time"
)

// TestRecordParts: an attempt sent in two parts (one per relay) adds a
// history entry per part, each naming its relay, counts one attempt of the
// message, and keeps each recipient's relay; a part that only waits for
// its relays adds no entry, no attempt and no reply.
func TestRecordParts(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := put(t, q, "body\r\n", "a@x.example", "b@y.example", "c@z.example")
	l := leaseOne(t, q)
	later := time.Now().Add(time.Hour)
	m, err := q.RecordParts(l, []Part{
		{Attempt: Attempt{Relay: "relay-a"}, Outcomes: []Outcome{{Address: "a@x.example", Result: Delivered, Reply: &Reply{Code: 250}, Relay: "relay-a"}}},
		{Attempt: Attempt{Relay: "relay-b"}, Outcomes: []Outcome{{Address: "b@y.example", Result: Deferred, Reply: &Reply{Code: 451}, NextAttempt: later, Relay: "relay-b"}}},
		{Attempt: Attempt{Relay: "relay-c"}, Outcomes: []Outcome{{Address: "c@z.example", Result: Waiting, NextAttempt: later, Relay: "relay-c"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Attempts != 1 || len(m.History) != 2 || m.History[0].Relay != "relay-a" || m.History[1].Relay != "relay-b" {
		t.Fatalf("attempts %d, history %+v; want 1 attempt, one entry per part tried", m.Attempts, m.History)
	}
	byAddr := map[string]Recipient{}
	for _, r := range m.Recipients {
		byAddr[r.Address] = r
	}
	if r := byAddr["b@y.example"]; r.Attempts != 1 || r.Relay != "relay-b" || r.Status != StatusDeferred {
		t.Errorf("deferred recipient %+v", r)
	}
	if r := byAddr["c@z.example"]; r.Attempts != 0 || r.Relay != "relay-c" || r.LastReply != nil || !r.NextAttempt.Equal(later) || !r.Status.Pending() {
		t.Errorf("waiting recipient %+v, want no attempt, no reply, the wait", r)
	}

	// Only waiting: nothing counted.
	if _, err := q.Retry([]string{id}); err != nil {
		t.Fatal(err)
	}
	l = leaseOne(t, q)
	m, err = q.RecordParts(l, []Part{{Outcomes: []Outcome{
		{Address: "b@y.example", Result: Waiting, NextAttempt: later},
		{Address: "c@z.example", Result: Waiting, NextAttempt: later},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Attempts != 1 || len(m.History) != 2 {
		t.Errorf("after a wait: attempts %d, %d history entries; want them unchanged", m.Attempts, len(m.History))
	}
}
