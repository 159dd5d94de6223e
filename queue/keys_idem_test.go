package queue

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestPutOnce: the key commits with the message; the same hash returns the
// first ID and stores nothing; another hash is ErrKeyConflict; past the
// window the key is pruned and the request queues again; the key survives
// a reopen.
func TestPutOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	q, err := Open(path, Options{Now: clock, IdempotencyWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	env := Envelope{From: "a@example.com", Recipients: []string{"b@example.org"}}
	ctx := context.Background()
	id, replayed, err := q.PutOnce(ctx, env, []byte("x\r\n"), "k", KeyRecord{Hash: "h1", MessageID: "m@x"})
	if err != nil || replayed {
		t.Fatal(id, replayed, err)
	}
	q.Close()
	q, err = Open(path, Options{Now: clock, IdempotencyWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	again, replayed, err := q.PutOnce(ctx, env, []byte("x\r\n"), "k", KeyRecord{Hash: "h1"})
	if again != id || !replayed || err != nil {
		t.Errorf("after reopen: %s %v %v, want %s", again, replayed, err, id)
	}
	if _, _, err := q.PutOnce(ctx, env, []byte("y\r\n"), "k", KeyRecord{Hash: "h2"}); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("other hash: %v", err)
	}
	if rec, _ := q.LookupKey("k"); rec == nil || rec.ID != id || rec.MessageID != "m@x" {
		t.Errorf("record %+v", rec)
	}
	if c, _ := q.Count(); c.Messages != 1 {
		t.Errorf("%d messages, want 1", c.Messages)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if rec, _ := q.LookupKey("k"); rec != nil {
		t.Errorf("expired key still seen: %+v", rec)
	}
	// The queue's own prune loop, which runs at Open, may have taken it
	// first when it ran late (a loaded machine): pruned once in all.
	if n, err := q.PruneKeys(10); n > 1 || err != nil {
		t.Errorf("pruned %d, %v", n, err)
	}
	if n, err := q.PruneKeys(10); n != 0 || err != nil {
		t.Errorf("pruned %d more, %v", n, err)
	}
	if id2, replayed, err := q.PutOnce(ctx, env, []byte("x\r\n"), "k", KeyRecord{Hash: "h1"}); id2 == id || replayed || err != nil {
		t.Errorf("after the window: %s %v %v", id2, replayed, err)
	}
	for _, p := range q.Check() {
		t.Errorf("check: %v", p)
	}
}
