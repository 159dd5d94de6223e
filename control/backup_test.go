package control

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"relayq/queue"
)

// TestBackupOverTheSocket: the file the client opened reaches the daemon
// with the request, holds the queue afterwards, and is a sound queue file.
func TestBackupOverTheSocket(t *testing.T) {
	q, dir := newTestQueue(t)
	id := putTestMessage(t, q, "b@x.org")
	sock := serveTest(t, dir, Options{Queue: q, AdminGID: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := CallWithFile(ctx, sock, Request{Op: OpBackup}, f)
	f.Close()
	if err != nil || resp.Backup == nil || resp.Backup.Messages != 1 {
		t.Fatalf("backup: %+v, %v", resp, err)
	}
	if problems, err := queue.CheckFile(dst, time.Second); err != nil || len(problems) > 0 {
		t.Fatalf("check of the backup: %v %v", err, problems)
	}
	restored, err := queue.Open(dst, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if _, err := restored.Get(id); err != nil {
		t.Fatalf("message %s in the backup: %v", id, err)
	}

	// Without a file, the request is refused and nothing is written.
	resp, err = Call(ctx, sock, Request{Op: OpBackup})
	if err == nil || resp.Code != CodeBadRequest {
		t.Fatalf("backup without a file: %+v, %v", resp, err)
	}
}

// TestPassedFilesAreClosed: a descriptor passed with any other request, or
// with a request the daemon refuses, does not stay open in the daemon.
func TestPassedFilesAreClosed(t *testing.T) {
	q, dir := newTestQueue(t)
	sock := serveTest(t, dir, Options{Queue: q, AdminGID: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Without collections, a file left to its finalizer stays open.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := openDescriptors(t)
	for range 50 {
		if _, err := CallWithFile(ctx, sock, Request{Op: OpStatus}, f); err != nil {
			t.Fatal(err)
		}
		if _, err := CallWithFile(ctx, sock, Request{Op: "no such op"}, f); err == nil {
			t.Fatal("an unknown op was answered")
		}
	}
	// The server closes its side after answering; give the last
	// handler a moment to return.
	deadline := time.Now().Add(5 * time.Second)
	for openDescriptors(t) > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := openDescriptors(t); after > before+2 {
		t.Fatalf("%d descriptors open before 100 requests with a file, %d after", before, after)
	}
}

func openDescriptors(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
