//go:build linux

package queue

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestClaimKeepsASecondDaemonOut: a claimed file cannot be claimed again
// (a second relayq serve fails with ErrLocked before binding anything),
// the claim does not stop its own holder's Open, and once released (after
// Close) the file can be claimed and opened again with what was queued.
func TestClaimKeepsASecondDaemonOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	c, err := ClaimFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ClaimFile(path, Options{LockTimeout: 200 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second claim: %v, want ErrLocked", err)
	}
	q, err := Open(path, Options{Claim: c})
	if err != nil {
		t.Fatal(err)
	}
	id := put(t, q, "hello\r\n", "a@example.org")
	if _, err := ClaimFile(path, Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("claim while open: %v, want ErrLocked", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	c2, err := ClaimFile(path, Options{})
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	defer c2.Release()
	q2 := openAt(t, path, Options{Claim: c2})
	if _, err := q2.Get(id); err != nil {
		t.Fatalf("message queued before: %v", err)
	}
}

// TestClaimOfANewFile: the empty file a claim creates is not set aside as
// a truncated queue, neither by its own Open nor by another relayq's
// preparation while it is claimed, and a claim released before Open
// leaves no empty file behind.
func TestClaimOfANewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "queue.db")
	c, err := ClaimFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ClaimFile(path, Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second claim of the new file: %v, want ErrLocked", err)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty file left after release: %v", err)
	}
	c, err = ClaimFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	openAt(t, path, Options{Claim: c})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".db" && e.Name() != "queue.db"+inflightSuffix {
			t.Errorf("unexpected file %s (set aside?)", e.Name())
		}
	}
}

// TestOfflineOperationsRespectTheClaim: while a starting relayq holds the
// claim (its queue not open yet), the offline check, listing and
// compaction fail with ErrLocked at once instead of taking bbolt's lock
// under the daemon's feet; after the release they work.
func TestOfflineOperationsRespectTheClaim(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, q, "hello\r\n", "a@example.org")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := ClaimFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckFile(path, time.Second); !errors.Is(err, ErrLocked) {
		t.Errorf("CheckFile while claimed: %v, want ErrLocked", err)
	}
	if _, err := OpenFileReader(path, time.Second); !errors.Is(err, ErrLocked) {
		t.Errorf("OpenFileReader while claimed: %v, want ErrLocked", err)
	}
	if _, err := CompactFile(path, time.Second); !errors.Is(err, ErrLocked) {
		t.Errorf("CompactFile while claimed: %v, want ErrLocked", err)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenFileReader(path, time.Second)
	if err != nil {
		t.Fatalf("OpenFileReader after release: %v", err)
	}
	defer r.Close()
	if p, err := r.MessagePage(PageOptions{Limit: 10}, nil); err != nil || len(p.Items) != 1 {
		t.Errorf("a page of the file after release: %d messages, %v", len(p.Items), err)
	}
}
