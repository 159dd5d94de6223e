package control

import (
	"context"
	"testing"
	"time"

	"relayq/queue"
)

// TestShowHasWhatListLeavesOut: list stays small (no attempt history, no
// copy of the record in dead letters); show has the history and the body.
func TestShowHasWhatListLeavesOut(t *testing.T) {
	q, dir := newTestQueue(t)
	id := putTestMessage(t, q, "b@x.org", "c@x.org")
	ls, err := q.Lease(1)
	if err != nil || len(ls) != 1 {
		t.Fatal(ls, err)
	}
	if _, err := q.Record(ls[0], []queue.Outcome{
		{Address: "b@x.org", Result: queue.Failed, Reply: &queue.Reply{Code: 550, Enhanced: "5.1.1"}},
		{Address: "c@x.org", Result: queue.Deferred, Reply: &queue.Reply{Code: 451}, NextAttempt: time.Now().Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	sock := serveTest(t, dir, Options{Queue: q, AdminGID: -1})
	ctx := context.Background()

	list, err := Call(ctx, sock, Request{Op: OpQueueList, State: "deferred"})
	if err != nil || len(list.Messages) != 1 || list.Messages[0].History != nil {
		t.Fatalf("list: %+v %v, want the message without its history", list, err)
	}
	if list, err := Call(ctx, sock, Request{Op: OpQueueList, State: "held"}); err != nil || len(list.Messages) != 0 {
		t.Fatalf("list --state held: %+v %v", list, err)
	}
	dead, err := Call(ctx, sock, Request{Op: OpDeadList})
	if err != nil || len(dead.Dead) != 1 || dead.Dead[0].Record != nil {
		t.Fatalf("dead list: %+v %v", dead, err)
	}
	show, err := Call(ctx, sock, Request{Op: OpQueueShow, IDs: []string{id}, Body: true})
	if err != nil || show.Message == nil || len(show.Message.History) != 1 || show.DeadLetter == nil || string(show.Body) != "x\r\n" {
		t.Fatalf("show: %+v %v", show, err)
	}
	resp, err := Call(ctx, sock, Request{Op: OpQueueHold})
	if err == nil || resp.Code != CodeBadRequest {
		t.Fatalf("hold without IDs: %+v %v, want bad_request", resp, err)
	}
	st, err := Call(ctx, sock, Request{Op: OpStatus})
	if err != nil || st.Status.Deferred != 1 || st.Status.Dead != 1 || st.Status.DeadLastDay != 1 || st.Status.OldestDeferred == nil {
		t.Fatalf("status: %+v %v", st.Status, err)
	}
}
