package queue

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fill puts n messages into a store at a new path, delivers one, dead-letters
// one and holds one, and closes it. It returns the path and the bodies by ID.
func fill(t *testing.T, n int) (string, map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{}
	for i := range n {
		body := strings.Repeat("line of a message body\r\n", 50*(i+1))
		bodies[put(t, q, body, "a@x.org")] = body
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range bodies {
			if !yield(id) {
				return
			}
		}
	})
	deliver(t, q, "smtp://relay", "a@x.org") // the oldest
	delete(bodies, ids[0])
	fail(t, q, reply550, "a@x.org") // the next: its body stays with the dead letter
	if err := one(t, q.Hold, ids[2]); err != nil {
		t.Fatal(err)
	}
	if p := q.Check(); len(p) != 0 {
		t.Fatal(p)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	return path, bodies
}

// TestCompactKeepsEveryMessage: compaction of a store whose file grew and
// emptied keeps every message, body, dead letter and archive record, the
// file's mode, and gives a file that opens and checks clean.
func TestCompactKeepsEveryMessage(t *testing.T) {
	path, bodies := fill(t, 30)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	res, err := CompactFile(path, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.SizeAfter <= 0 || res.SizeAfter > res.SizeBefore || res.Keys["messages"] != 28 || res.Keys["dead"] != 1 || res.Keys["archive"] != 2 {
		t.Errorf("compact result %+v", res)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after compaction: %v, %v, want 0640", fi.Mode(), err)
	}
	if leftovers, _ := filepath.Glob(path + ".compact-*"); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	q := openAt(t, path, Options{})
	msgs, err := q.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 28 {
		t.Fatalf("%d messages after compaction, want 28", len(msgs))
	}
	for id, want := range bodies {
		got, err := io.ReadAll(q.Body(id))
		if err != nil || string(got) != want {
			t.Errorf("body of %s after compaction: %d bytes, %v", id, len(got), err)
		}
	}
	if d, _ := q.ListDead(); len(d) != 1 {
		t.Errorf("%d dead letters after compaction", len(d))
	}
	if s, _ := q.Summarize(time.Time{}); s.Held != 1 {
		t.Errorf("summary after compaction %+v, want the hold kept", s)
	}
}

// TestMaintenanceRefusedWhileOpen: while a process holds the store, the
// offline check and compaction fail with ErrLocked and change nothing.
func TestMaintenanceRefusedWhileOpen(t *testing.T) {
	q, path := openTest(t, Options{})
	put(t, q, "x\r\n", "a@x.org")
	if _, err := CheckFile(path, 50*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("CheckFile while open: %v, want ErrLocked", err)
	}
	if _, err := CompactFile(path, 50*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("CompactFile while open: %v, want ErrLocked", err)
	}
	if c, _ := q.Count(); c.Messages != 1 {
		t.Errorf("%d messages", c.Messages)
	}
}

// TestCheckFileClean: a sound file checks clean, read-only (its
// modification time does not change).
func TestCheckFileClean(t *testing.T) {
	path, _ := fill(t, 3)
	before, _ := os.Stat(path)
	problems, err := CheckFile(path, time.Second)
	if err != nil || len(problems) != 0 {
		t.Fatalf("CheckFile: %v, %v", problems, err)
	}
	if after, _ := os.Stat(path); !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Error("the check changed the file")
	}
	if _, err := CheckFile(filepath.Join(t.TempDir(), "none.db"), time.Second); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckFile of a missing file: %v", err)
	}
}

// corruptLeaf scrambles the page type of the root page of bucket in the
// file at path, as a torn or bit-flipped write would.
func corruptLeaf(t *testing.T, path string, bucket []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var pgid uint64
	_ = db.View(func(tx *bolt.Tx) error {
		pgid = uint64(tx.Bucket(bucket).Root())
		return nil
	})
	size := db.Info().PageSize
	db.Close()
	if pgid == 0 {
		t.Fatalf("bucket %s is inline; put more in it", bucket)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var flags [2]byte
	binary.LittleEndian.PutUint16(flags[:], 0x40) // no such page type
	if _, err := f.WriteAt(flags[:], int64(pgid)*int64(size)+8); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedFile: a damaged file makes Open fail with ErrDamaged (no
// crash), or, when Close saved the freelist and Open did not walk the file
// first, the walk after Open find it (openedDamaged); CheckFile reports the
// damage, and CompactFile refuses.
func TestDamagedFile(t *testing.T) {
	for _, stop := range []string{"crash", "close"} {
		t.Run("after a "+stop, func(t *testing.T) { testDamagedFile(t, stop == "crash") })
	}
}

func testDamagedFile(t *testing.T, crashed bool) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, path string)
		// a file with its freelist saved opens, and the walk after
		// Open finds the damage
		walkFinds bool
	}{
		{"messages page", func(t *testing.T, path string) { corruptLeaf(t, path, bucketMessages) }, true},
		{"both meta pages", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, off := range []int64{20, int64(os.Getpagesize()) + 20} {
				if _, err := f.WriteAt([]byte("garbage!"), off); err != nil {
					t.Fatal(err)
				}
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, _ := fill(t, 30)
			if crashed {
				forgetFreelist(t, path)
			}
			tc.corrupt(t, path)
			q, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
			switch {
			case !crashed && tc.walkFinds:
				if err != nil {
					t.Fatalf("Open of a file with its freelist saved: %v; want it opened and walked after", err)
				}
				openedDamaged(t, q, path)
			case !errors.Is(err, ErrDamaged):
				if q != nil {
					q.Close()
				}
				t.Fatalf("Open of a damaged file: %v, want ErrDamaged", err)
			}
			problems, err := CheckFile(path, time.Second)
			if err != nil || len(problems) == 0 {
				t.Fatalf("CheckFile of a damaged file: %v, %v; want problems", problems, err)
			}
			t.Logf("problems: %v", problems)
			if _, err := CompactFile(path, time.Second); !errors.Is(err, ErrDamaged) {
				t.Errorf("CompactFile of a damaged file: %v, want ErrDamaged", err)
			}
		})
	}
}

// TestFileReader: the messages of a stopped store, read-only, page by
// page, as List gave them while it ran (held included), with the totals
// of its counters; ErrLocked while a store has it open.
func TestFileReader(t *testing.T) {
	path, _ := fill(t, 6)
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := q.List()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileReader(path, 50*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("OpenFileReader while the store is open: %v, want ErrLocked", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenFileReader(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []*Message
	for o := (PageOptions{Limit: 3}); ; {
		p, err := r.MessagePage(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Items...)
		if p.Next == "" {
			break
		}
		o.After = p.Next
	}
	if len(got) != len(want) || len(got) != 4 {
		t.Fatalf("pages of the file: %d messages, List: %d, want 4 (6 put, 1 delivered, 1 dead)", len(got), len(want))
	}
	var bytes int64
	for i := range got {
		bytes += got[i].Size
		if got[i].ID != want[i].ID || got[i].State() != want[i].State() || len(got[i].Recipients) != len(want[i].Recipients) {
			t.Errorf("message %d: file %s %s, List %s %s", i, got[i].ID, got[i].State(), want[i].ID, want[i].State())
		}
	}
	if tot, err := r.Totals(); err != nil || tot.Messages != 4 || tot.Dead != 1 || tot.Bytes != bytes {
		t.Errorf("Totals of the file: %+v, %v; want 4 messages of %d bytes, 1 dead letter", tot, err, bytes)
	}
	if _, err := OpenFileReader(filepath.Join(t.TempDir(), "none.db"), time.Second); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenFileReader of no file: %v, want ErrNotExist", err)
	}
}
