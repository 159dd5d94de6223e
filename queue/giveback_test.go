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
	tx, err = q.db.raw().Begin(false)
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

// TestGiveBackPassOnlyWhenSomethingNew: once the free pages of a drained
// queue have been given back, the background loop's pass reads no page
// while nothing new was freed (it used to read every page header of the
// file each minute under the write lock); it looks again once messages
// came and went. A pass looks at the file in several transactions and
// gives back what one transaction did.
func TestGiveBackPassOnlyWhenSomethingNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q := openAt(t, path, Options{})
	q.given.keep, q.given.min, q.given.chunk = 1<<20, 1<<20, 1000
	body := strings.Repeat("0123456789abcdef", 1<<10) // 16 KiB
	cycle := func() {
		t.Helper()
		for range 1000 {
			put(t, q, body, "a@example.org")
		}
		if n := deliverAll(t, q); n != 1000 {
			t.Fatalf("delivered %d", n)
		}
	}
	pass := func() int64 {
		t.Helper()
		before := q.given.pagesRead
		if !q.giveBackOnce() {
			t.Fatal("the file system cannot punch holes")
		}
		return q.given.pagesRead - before
	}
	cycle()
	pages := fileSize(t, path) / int64(q.db.PageSize())
	if n := pass(); n < pages/2 {
		t.Fatalf("first pass after the drain read %d of %d pages", n, pages)
	}
	before := diskBytes(t, path)
	if n := pass(); n < pages/2 {
		t.Fatalf("second pass (gives back what the first saw free) read %d of %d pages", n, pages)
	}
	after := diskBytes(t, path)
	if before-after < 8<<20 {
		t.Fatalf("given back in chunks: the file went from %d to %d bytes on disk", before, after)
	}
	for i := range 3 {
		if n := pass(); n != 0 {
			t.Fatalf("pass %d with nothing freed since the last read %d pages", i+3, n)
		}
	}
	put(t, q, "small\r\n", "b@example.org") // a commit or two: no room to speak of
	deliverAll(t, q)
	if n := pass(); n != 0 {
		t.Fatalf("pass after one message came and went read %d pages", n)
	}
	cycle()
	if n := pass(); n == 0 {
		t.Fatal("no pass after 16 MiB of messages came and went")
	}
}
