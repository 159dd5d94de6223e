package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

func TestListOverTheSocket(t *testing.T) {
	q, dir := newTestQueue(t)
	id := putTestMessage(t, q, "b@x.org")
	sock := serveTest(t, dir, Options{Queue: q, AdminGID: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := Call(ctx, sock, Request{Op: OpQueueList})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Messages) != 1 || resp.Messages[0].ID != id || resp.Messages[0].Recipients[0].Address != "b@x.org" {
		t.Fatalf("list: %+v", resp.Messages)
	}
	if resp, err := Call(ctx, sock, Request{Op: OpDeadList}); err != nil || len(resp.Dead) != 0 {
		t.Fatalf("dead list: %+v %v", resp, err)
	}
	if _, err := Call(ctx, sock, Request{Op: "rm -rf"}); err == nil {
		t.Fatal("unknown op accepted")
	}
	// A second daemon must not steal a live socket.
	if _, err := Listen(sock, q, slog.Default()); err == nil {
		t.Fatal("a second Listen took over a live control socket")
	}
}

func TestCallWithoutDaemon(t *testing.T) {
	_, err := Call(context.Background(), filepath.Join(t.TempDir(), "none.sock"), Request{Op: OpQueueList})
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("got %v, want ErrNotRunning", err)
	}
}

func TestPeerNotAllowedIsRefused(t *testing.T) {
	q, dir := newTestQueue(t)
	sock := filepath.Join(dir, "control.sock")
	// As if the caller were another user.
	s, err := listen(Options{Socket: sock, Queue: q, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, func(peer) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Call(context.Background(), sock, Request{Op: OpQueueList}); err == nil || err.Error() != "control: permission denied" {
		t.Fatalf("got %v, want permission denied", err)
	}
}
