package queue

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestGiveBackFreePages: once a queue of 2,000 messages has drained, the
// disk blocks of its free pages go back to the file system while the
// queue stays open (two passes: a page must have been free at the one
// before), the file keeps its length, and the queue goes on taking,
// delivering and checking messages, before and after a reopen. Nothing is
// given back while a read transaction is open.
func TestGiveBackFreePages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	q.given.keep = 1 << 20
	body := strings.Repeat("0123456789abcdef", 1<<10) // 16 KiB
	for range 2000 {
		put(t, q, body, "a@example.org")
	}
	if n := deliverAll(t, q); n != 2000 {
		t.Fatalf("delivered %d", n)
	}
	size, before := fileSize(t, path), diskBytes(t, path)
	var tx *bolt.Tx
	if n, err := q.GiveBack(); n != 0 || err != nil {
		t.Fatalf("first pass gave back %d, %v; want nothing yet", n, err)
	}
	tx, err = q.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := q.GiveBack(); n != 0 || err != nil {
		t.Errorf("with a reader open: gave back %d, %v", n, err)
	}
	tx.Rollback()
	free := q.Space().FileFree
	given, err := q.GiveBack()
	if err != nil {
		t.Fatal(err)
	}
	after := diskBytes(t, path)
	t.Logf("file of %d bytes: %d on disk, %d after giving back %d", size, before, after, given)
	if given < 20<<20 || before-after < given*9/10 {
		t.Fatalf("gave back %d bytes; the file went from %d to %d bytes on disk", given, before, after)
	}
	// Two passes ran with no commit between them: a third has nothing
	// more to give back and does not read the file's pages again.
	if allocs := testing.AllocsPerRun(1, func() {
		if n, err := q.GiveBack(); n != 0 || err != nil {
			t.Errorf("pass with no commit since the last two: %d, %v; want nothing", n, err)
		}
	}); allocs > 100 {
		t.Errorf("pass with no commit since the last two: %.0f allocations, want the pages left alone", allocs)
	}
	if got := q.Space().FileFree; got != free-given {
		t.Errorf("after a skipped pass, room counted in free pages: %d, want %d", got, free-given)
	}
	if fileSize(t, path) != size {
		t.Errorf("the file's length changed")
	}
	if got := q.Space().FileFree; got != free-given {
		t.Errorf("room counted in free pages: %d, want %d (%d less what was given back)", got, free-given, free)
	}
	check := func(q *Queue) {
		t.Helper()
		ids := []string{put(t, q, body, "b@example.org"), put(t, q, "short\r\n", "c@example.org")}
		for _, id := range ids {
			m, err := q.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(q.Body(id))
			if err != nil || int64(len(got)) != m.Size || q.VerifyBody(m) != nil {
				t.Fatalf("body of %s after giving back: %d bytes, %v", id, len(got), err)
			}
		}
		if p := q.Check(); len(p) > 0 {
			t.Fatalf("Check: %v", p)
		}
		if n := deliverAll(t, q); n != 2 {
			t.Fatalf("delivered %d", n)
		}
	}
	check(q)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	check(openAt(t, path, Options{}))
}
