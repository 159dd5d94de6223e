package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"relayq/smallfs"
)

// TestBackupWhileCommitting: a backup taken while four writers commit
// without pause is a sound queue file holding every message acknowledged
// before the backup began, with its body, and no message it does not
// count.
func TestBackupWhileCommitting(t *testing.T) {
	q, _ := openTest(t, Options{})
	var before []string
	for i := range 200 {
		before = append(before, put(t, q, fmt.Sprintf("Subject: %d\r\n\r\nbefore %d\r\n", i, i), "a@example.org"))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var during atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				put(t, q, fmt.Sprintf("writer %d message %d\r\n", w, i), "b@example.org")
				during.Add(1)
			}
		}()
	}
	for during.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	acked := during.Load() // at least these were acknowledged before the backup
	dst := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	res, err := q.Backup(f)
	f.Close()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Size() != res.Size {
		t.Fatalf("backup file: %v, %d bytes, result says %d", err, fi.Size(), res.Size)
	}
	if res.Messages < len(before)+int(acked) {
		t.Errorf("the backup counts %d messages; %d were acknowledged before it began", res.Messages, len(before)+int(acked))
	}
	problems, err := CheckFile(dst, time.Second)
	if err != nil || len(problems) > 0 {
		t.Fatalf("check of the backup: %v %v", err, problems)
	}
	restored := openAt(t, dst, Options{})
	all, err := restored.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != res.Messages {
		t.Errorf("the backup holds %d messages, its result says %d", len(all), res.Messages)
	}
	for i, id := range before {
		body, err := io.ReadAll(restored.Body(id))
		if want := fmt.Sprintf("before %d", i); err != nil || !strings.Contains(string(body), want) {
			t.Fatalf("message %s in the backup: %q, %v", id, body, err)
		}
	}
}

// TestBackupOnAFullDisk: with no room for the copy where it goes, Backup
// refuses with ErrFull before writing anything, and the queue goes on.
func TestBackupOnAFullDisk(t *testing.T) {
	q, _ := openTest(t, Options{})
	for i := range 300 {
		put(t, q, fmt.Sprintf("%d %0*d\r\n", i, 16<<10, 0), "a@example.org") // ~5 MiB in all
	}
	mnt := smallfs.Mount(t, "2m")
	f, err := os.Create(filepath.Join(mnt, "backup.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = q.Backup(f)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("backup onto a 2 MiB file system: %v, want ErrFull", err)
	}
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Errorf("the refused backup wrote %d bytes", fi.Size())
	}
	put(t, q, "after\r\n", "a@example.org")
}

// TestBackupOnlyIntoARegularFile: a pipe is refused (a reader that never
// reads would hold the copy's transaction open for good).
func TestBackupOnlyIntoARegularFile(t *testing.T) {
	q, _ := openTest(t, Options{})
	put(t, q, "x\r\n", "a@example.org")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := q.Backup(w); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("backup into a pipe: %v, want ErrNotRegular", err)
	}
}

// TestBackupFileWhileServingAndAfter: the offline backup is refused while
// the queue is open (the daemon takes it then), and works once it is
// closed; a closed queue refuses Backup.
func TestBackupFileWhileServingAndAfter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := put(t, q, "kept\r\n", "a@example.org")
	dst, err := os.Create(filepath.Join(t.TempDir(), "backup.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := BackupFile(path, dst, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("offline backup of an open queue: %v, want ErrLocked", err)
	}
	q.Close()
	if _, err := q.Backup(dst); !errors.Is(err, ErrClosed) {
		t.Errorf("backup after Close: %v, want ErrClosed", err)
	}
	res, err := BackupFile(path, dst, time.Second)
	if err != nil || res.Messages != 1 {
		t.Fatalf("offline backup: %+v, %v", res, err)
	}
	restored := openAt(t, dst.Name(), Options{})
	if m, err := restored.Get(id); err != nil || m.ID != id {
		t.Fatalf("message in the offline backup: %v", err)
	}
}
