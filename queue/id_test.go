package queue

import (
	"context"
	"testing"
)

// TestPutWithID: a submitter that names the queue ID in the message before
// Put (the intake's Received header) gets the message stored under that
// ID; an ID already in use, or not an ID, is refused and stores nothing.
func TestPutWithID(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := q.NewID()
	env := Envelope{ID: id, From: "cron@example.org", Recipients: []string{"a@example.net"}}
	got, err := q.Put(context.Background(), env, []byte("x\r\n"))
	if err != nil || got != id {
		t.Fatalf("Put = %q, %v; want %q", got, err, id)
	}
	if _, err := q.Put(context.Background(), env, []byte("y\r\n")); err == nil {
		t.Error("a second Put with the same ID succeeded")
	}
	env.ID = "not an id"
	if _, err := q.Put(context.Background(), env, []byte("z\r\n")); err == nil {
		t.Error("Put with a malformed ID succeeded")
	}
	if msgs, err := q.List(); err != nil || len(msgs) != 1 || msgs[0].ID != id {
		t.Errorf("queue holds %v (%v), want only %s", msgs, err, id)
	}
}
