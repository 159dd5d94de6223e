package queue

import (
	"errors"
	"testing"
	"time"
)

var reply250 = &Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"Ok: queued as 4XyZ12"}}

// deliver leases the message and records it delivered for rcpts by relay.
func deliver(t *testing.T, q *Queue, relay string, rcpts ...string) {
	t.Helper()
	l := leaseOne(t, q)
	var out []Outcome
	for _, r := range rcpts {
		out = append(out, Outcome{Address: r, Result: Delivered, Reply: reply250})
	}
	if _, err := q.RecordAttempt(l, Attempt{Relay: relay, Duration: time.Second}, out); err != nil {
		t.Fatal(err)
	}
}

func lookup(t *testing.T, q *Queue, id string) *Lookup {
	t.Helper()
	l, err := q.Lookup(id)
	if err != nil {
		t.Fatalf("lookup %s: %v", id, err)
	}
	return l
}

// TestHistoryKeptAndPruned: a delivered message leaves the queue but its
// record stays, with the relay and the relay's queue ID, for the
// retention; then the pruner deletes it and the ID is unknown.
func TestHistoryKeptAndPruned(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now, HistoryRetention: 48 * time.Hour})
	id := put(t, q, "Subject: x\r\n\r\nx\r\n", "a@example.com")
	clk.Advance(time.Minute)
	deliver(t, q, "smtp://relay.example.net:587", "a@example.com")

	l := lookup(t, q, id)
	if l.Message != nil || l.Dead != nil || l.Archived == nil {
		t.Fatalf("lookup after delivery: %+v, want only an archive record", l)
	}
	a := l.Archived
	r := a.Recipients[0]
	if a.Fate != FateDelivered || !a.Left.Equal(clk.Now()) || a.From != "cron@example.org" || a.Size == 0 ||
		r.Status != StatusDelivered || r.Relay != "smtp://relay.example.net:587" || r.RelayID != "4XyZ12" ||
		!r.Time.Equal(clk.Now()) || r.Reply.String() != "250 2.0.0 Ok: queued as 4XyZ12" {
		t.Fatalf("archive record %+v, recipient %+v", a, r)
	}
	if _, err := q.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after delivery: %v, want ErrNotFound", err)
	}

	clk.Advance(24 * time.Hour)
	later := put(t, q, "y\r\n", "b@example.com")
	deliver(t, q, "", "b@example.com")
	if n, err := q.PruneHistory(100); err != nil || n != 0 {
		t.Fatalf("prune within the retention: %d, %v", n, err)
	}
	clk.Advance(24*time.Hour + time.Second) // the first is 48h1s old, the second 24h1s
	if _, err := q.Lookup(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup past the retention: %v, want ErrNotFound", err)
	}
	if n, err := q.PruneHistory(100); err != nil || n != 1 {
		t.Fatalf("prune: %d, %v, want 1 record deleted", n, err)
	}
	if l := lookup(t, q, later); l.Archived == nil {
		t.Error("the record still within its retention was pruned")
	}
	c, _ := q.Count()
	if c.Messages != 0 {
		t.Errorf("%d messages left", c.Messages)
	}
}

// TestPruneHistoryInBatches: pruning deletes at most max records per
// commit, oldest first.
func TestPruneHistoryInBatches(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now, HistoryRetention: time.Hour})
	var ids []string
	for range 5 {
		ids = append(ids, put(t, q, "x\r\n", "a@x.org"))
		deliver(t, q, "", "a@x.org")
		clk.Advance(time.Second)
	}
	clk.Advance(time.Hour)
	for _, want := range []int{2, 2, 1, 0} {
		if n, err := q.PruneHistory(2); err != nil || n != want {
			t.Fatalf("prune: %d, %v, want %d", n, err, want)
		}
	}
	for _, id := range ids {
		if _, err := q.Lookup(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v after pruning", id, err)
		}
	}
}

// putDeferred queues a message to rcpt and records a 451 for it: it is due
// again after wait.
func putDeferred(t *testing.T, q *Queue, clk *clock, wait time.Duration, rcpt string) string {
	t.Helper()
	id := put(t, q, "x\r\n", rcpt)
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{{Address: rcpt, Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(wait)}}); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestHistoryOfALongStayPrunedByWhenItLeft: pruning reads the records in
// the order the messages were created, but deletes a record only once the
// message left the queue longer ago than the retention: one that stayed
// queued for hours keeps its record after a younger message's is gone.
func TestHistoryOfALongStayPrunedByWhenItLeft(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now, HistoryRetention: time.Hour})
	long := putDeferred(t, q, clk, 3*time.Hour, "a@x.org")
	clk.Advance(time.Second)
	short := put(t, q, "y\r\n", "b@x.org")
	deliver(t, q, "", "b@x.org") // leaves at 0h00m01
	clk.Advance(3 * time.Hour)
	deliver(t, q, "", "a@x.org") // leaves at 3h00m01, created before the other
	clk.Advance(30 * time.Minute)
	if n, err := q.PruneHistory(100); err != nil || n != 1 {
		t.Fatalf("prune at 3h30: %d, %v; want the short stay's record only", n, err)
	}
	if _, err := q.Lookup(short); !errors.Is(err, ErrNotFound) {
		t.Errorf("the short stay: %v, want ErrNotFound", err)
	}
	if l := lookup(t, q, long); l.Archived == nil {
		t.Error("the long stay's record, 30 minutes after it left, was pruned")
	}
	clk.Advance(time.Hour)
	if n, err := q.PruneHistory(100); err != nil || n != 1 {
		t.Fatalf("prune at 4h30: %d, %v; want the long stay's record", n, err)
	}
}

// TestPrunerGoesOnPastLongStays: the background pass prunes in batches,
// each going on after the last, past the records it keeps.
func TestPrunerGoesOnPastLongStays(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now, HistoryRetention: time.Hour})
	long := putDeferred(t, q, clk, 3*time.Hour, "a@x.org")
	var short []string
	for range 5 {
		clk.Advance(time.Second)
		short = append(short, put(t, q, "y\r\n", "b@x.org"))
		deliver(t, q, "", "b@x.org")
	}
	clk.Advance(3 * time.Hour)
	deliver(t, q, "", "a@x.org")
	clk.Advance(30 * time.Minute)
	q.pruneAgedBy(make(chan struct{}), 2)
	for _, id := range short {
		if _, err := q.Lookup(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v after the pass, want ErrNotFound", id, err)
		}
	}
	if _, _, err := q.pruneHistoryAfter(clk.Now().Add(-time.Hour), nil, 10); err != nil {
		t.Fatal(err)
	}
	if l := lookup(t, q, long); l.Archived == nil {
		t.Error("the long stay's record was pruned")
	}
	if _, records, _ := q.HistorySize(); records != 1 {
		t.Errorf("%d records left, want the long stay's", records)
	}
}

// TestArchiveFates: what the record says for each way of leaving the
// queue; a dead letter requeued and then delivered leaves one record, the
// latest (the cleanup's Check finds no stale index entry).
func TestArchiveFates(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})

	dead := put(t, q, "d\r\n", "a@x.org", "b@x.org")
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{
		{Address: "a@x.org", Result: Delivered, Reply: reply250},
		{Address: "b@x.org", Result: Failed, Reply: reply550},
	}); err != nil {
		t.Fatal(err)
	}
	deleted := put(t, q, "x\r\n", "c@x.org")
	if err := one(t, q.Delete, deleted); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]Fate{dead: FateDead, deleted: FateDeleted} {
		if a := lookup(t, q, id).Archived; a == nil || a.Fate != want {
			t.Errorf("%s: archive record %+v, want fate %s", id, a, want)
		}
	}
	if l := lookup(t, q, dead); l.Dead == nil || l.Archived.Recipients[0].RelayID != "4XyZ12" || l.Archived.Recipients[1].RelayID != "" {
		t.Errorf("dead message lookup %+v", l)
	}

	clk.Advance(time.Minute)
	if err := one(t, func(ids []string) ([]IDResult, error) { return q.Requeue(ids, ReplyClass{}) }, dead); err != nil {
		t.Fatal(err)
	}
	if l := lookup(t, q, dead); l.Message == nil {
		t.Fatalf("requeued message not in the queue: %+v", l)
	}
	deliver(t, q, "", "b@x.org")
	a := lookup(t, q, dead).Archived
	if a.Fate != FateDelivered || !a.Left.Equal(clk.Now()) {
		t.Errorf("after requeue and delivery: %+v, want delivered now", a)
	}
}

// TestHistoryRetentionNegativeKeepsNone: with a negative retention no
// record is written.
func TestHistoryRetentionNegativeKeepsNone(t *testing.T) {
	q, _ := openTest(t, Options{HistoryRetention: -1})
	id := put(t, q, "x\r\n", "a@x.org")
	deliver(t, q, "", "a@x.org")
	if _, err := q.Lookup(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup: %v, want ErrNotFound", err)
	}
}

// TestUncertainStoredAndListed: an attempt cut off after the dot leaves the
// recipient uncertain, the message in state uncertain (and counted so), due
// again at its next attempt; delivered then, it is archived delivered. With
// Hold, the message is held instead and never leased.
func TestUncertainStoredAndListed(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	lost := &Reply{Lines: []string{"connection lost after the final dot"}, Stage: "dot"}
	id := put(t, q, "x\r\n", "a@x.org", "b@x.org")
	l := leaseOne(t, q)
	m, err := q.RecordAttempt(l, Attempt{}, []Outcome{
		{Address: "a@x.org", Result: Deferred, Uncertain: true, Reply: lost, NextAttempt: clk.Now().Add(time.Minute)},
		{Address: "b@x.org", Result: Deferred, Uncertain: true, Reply: lost, NextAttempt: clk.Now().Add(time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.State() != StateUncertain || m.Recipients[0].Status != StatusUncertain || m.History[0].Results[0].Status != StatusUncertain {
		t.Fatalf("after an uncertain attempt: state %s, recipients %+v, history %+v", m.State(), m.Recipients, m.History)
	}
	if st, err := ParseState("uncertain"); err != nil || st != StateUncertain {
		t.Errorf("ParseState(uncertain) = %q, %v", st, err)
	}
	if s, _ := q.Summarize(clk.Now()); s.Uncertain != 1 || s.Deferred != 0 {
		t.Errorf("summary %+v, want one uncertain", s)
	}
	clk.Advance(time.Minute)
	deliver(t, q, "", "a@x.org", "b@x.org")
	if a := lookup(t, q, id).Archived; a == nil || a.Fate != FateDelivered {
		t.Errorf("archive after the retry: %+v", a)
	}

	held := put(t, q, "y\r\n", "c@x.org")
	l = leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{{Address: "c@x.org", Result: Deferred, Uncertain: true, Hold: true, Reply: lost, NextAttempt: clk.Now()}}); err != nil {
		t.Fatal(err)
	}
	m, _ = q.Get(held)
	if m.State() != StateHeld || m.Recipients[0].Status != StatusUncertain {
		t.Fatalf("with hold: state %s, recipient %+v", m.State(), m.Recipients[0])
	}
	clk.Advance(time.Hour)
	if ls, err := q.Lease(10); err != nil || len(ls) != 0 {
		t.Errorf("leased %d held messages (%v)", len(ls), err)
	}
}

func TestRelayQueueID(t *testing.T) {
	for _, tt := range []struct {
		reply *Reply
		want  string
	}{
		{&Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"Ok: queued as 4Bk2Ky6Qx5zLsyW"}}, "4Bk2Ky6Qx5zLsyW"},
		{&Reply{Code: 250, Lines: []string{"2.0.0 Ok: queued as C1M1"}}, "C1M1"},
		{&Reply{Code: 250, Lines: []string{"OK id=1tXyZa-000AbC-2Q"}}, "1tXyZa-000AbC-2Q"},
		{&Reply{Code: 250, Lines: []string{"Message accepted, queued as <20261125.abc@relay>."}}, "20261125.abc@relay"},
		{&Reply{Code: 250, Lines: []string{"2.0.0 OK 1700000000 x1si123.45 - gsmtp"}}, ""},
		{&Reply{Code: 451, Lines: []string{"queued as nothing"}}, ""},
		{nil, ""},
	} {
		if got := RelayQueueID(tt.reply); got != tt.want {
			t.Errorf("RelayQueueID(%v) = %q, want %q", tt.reply, got, tt.want)
		}
	}
}
