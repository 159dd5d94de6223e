package control

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"relayq/queue"
)

// newTestQueue opens a queue in a fresh directory, closed when the test
// ends; the test's control socket goes in the same directory.
func newTestQueue(t *testing.T) (*queue.Queue, string) {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q, dir
}

// putTestMessage queues "x\r\n" from a@x.org to rcpts and returns its ID.
func putTestMessage(t *testing.T, q *queue.Queue, rcpts ...string) string {
	t.Helper()
	id, err := q.Put(context.Background(), queue.Envelope{From: "a@x.org", Recipients: rcpts}, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// serveTest runs a server for opts on dir/control.sock (a silent logger
// unless opts has one), closed when the test ends; it returns the socket.
func serveTest(t *testing.T, dir string, opts Options) string {
	t.Helper()
	opts.Socket = filepath.Join(dir, "control.sock")
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := ListenWith(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return opts.Socket
}
