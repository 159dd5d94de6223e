package control

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"relayq/queue"
)

// TestStatusReportsRelays: status carries what Options.Relays reports,
// asked afresh at each request; show carries the transcript of the last
// attempt, which list leaves out with the rest of the history.
func TestStatusReportsRelays(t *testing.T) {
	q, dir := newTestQueue(t)
	id := putTestMessage(t, q, "b@x.org")
	ls, err := q.Lease(1)
	if err != nil || len(ls) != 1 {
		t.Fatal(ls, err)
	}
	reply := &queue.Reply{Code: 421, Enhanced: "4.3.2", Lines: []string{"down for maintenance"}, Stage: "greeting"}
	if _, err := q.RecordAttempt(ls[0], queue.Attempt{Relay: "smtp://relay:25", Transcript: "* connected to 192.0.2.1:25\nS: 421 4.3.2 down for maintenance"},
		[]queue.Outcome{{Address: "b@x.org", Result: queue.Deferred, Reply: reply, NextAttempt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Minute).Round(0)
	relay := RelayStatus{Relay: "smtp://relay:25", State: "paused", PausedUntil: &until, Failures: 3, LastAttempt: &until, LastReply: reply}
	var asked atomic.Int32
	sock := serveTest(t, dir, Options{Queue: q, AdminGID: -1,
		Relays: func() []RelayStatus { asked.Add(1); return []RelayStatus{relay} }})
	ctx := context.Background()

	for range 2 {
		resp, err := Call(ctx, sock, Request{Op: OpStatus})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Status.Relays; len(got) != 1 || got[0].State != "paused" || got[0].Failures != 3 ||
			!got[0].PausedUntil.Equal(until) || got[0].LastReply.String() != reply.String() {
			t.Fatalf("status relays: %+v, want %+v", got, relay)
		}
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("Relays asked %d times for 2 status requests, want each time", n)
	}

	show, err := Call(ctx, sock, Request{Op: OpQueueShow, IDs: []string{id}})
	if err != nil || len(show.Message.History) != 1 || !strings.Contains(show.Message.History[0].Transcript, "S: 421 4.3.2") {
		t.Fatalf("show: %+v %v, want the last attempt's transcript", show.Message, err)
	}
	list, err := Call(ctx, sock, Request{Op: OpQueueList})
	if err != nil || len(list.Messages) != 1 || list.Messages[0].History != nil {
		t.Fatalf("list: %+v %v, want the message without its history and transcript", list.Messages, err)
	}
}

// TestStatusReportsMemory: status carries intake's memory budget as
// Options.Memory reports it, and leaves it out when there is no budget.
func TestStatusReportsMemory(t *testing.T) {
	q, dir := newTestQueue(t)
	var budget atomic.Int64
	budget.Store(4 << 20)
	sock := serveTest(t, dir, Options{Queue: q, AdminGID: -1,
		Memory: func() (int64, int64) { return 1 << 20, budget.Load() }})
	ctx := context.Background()
	resp, err := Call(ctx, sock, Request{Op: OpStatus})
	if err != nil || resp.Status.Memory == nil || *resp.Status.Memory != (MemoryStatus{InFlight: 1 << 20, Max: 4 << 20}) {
		t.Fatalf("status memory: %+v, %v; want 1 MiB of 4 MiB", resp.Status.Memory, err)
	}
	budget.Store(0)
	if resp, err := Call(ctx, sock, Request{Op: OpStatus}); err != nil || resp.Status.Memory != nil {
		t.Errorf("status memory without a budget: %+v, %v; want none", resp.Status.Memory, err)
	}
}
