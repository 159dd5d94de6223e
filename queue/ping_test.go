package queue

import (
	"errors"
	"path/filepath"
	"testing"
)

// Ping answers through the committer while the queue is open, and says so
// once it is closed.
func TestPing(t *testing.T) {
	q, err := Open(filepath.Join(t.TempDir(), "queue.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, q, "Subject: x\r\n\r\nbody\r\n", "a@example.net")
	if err := q.Ping(); err != nil {
		t.Fatalf("Ping on an open queue: %v", err)
	}
	for _, p := range q.Check() {
		t.Errorf("integrity: %v", p)
	}
	q.Close()
	if err := q.Ping(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping on a closed queue: %v, want ErrClosed", err)
	}
}
