package queue

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDamagedSavedFreelist: the freelist Close saved is damaged while
// relayq is stopped. Open never lets bbolt read a freelist it cannot trust:
// with the sidecar missing, truncated or stale the file is walked first and
// a good freelist opens fine; a damaged one (an ID flipped to a page in
// use, a garbage count, a zeroed page, an ID past the end) makes Open fail
// with ErrDamaged saying to run `relayq compact`, never a panic, and after
// compact every message is there, reads back and is delivered.
func TestDamagedSavedFreelist(t *testing.T) {
	orig, bodies := freelistFile(t)
	fl, err := checkFreelist(orig)
	if err != nil || fl == nil {
		t.Fatalf("checkFreelist of a cleanly closed file: %v, %v", fl, err)
	}
	if !sidecarMatches(orig, fl) {
		t.Fatal("the sidecar written at Close does not match the freelist")
	}
	if len(fl.ids) < 4 {
		t.Fatalf("only %d free pages: the test needs more", len(fl.ids))
	}
	f, err := os.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	_, pageSize, _ := readMeta(f)
	f.Close()
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string)
		damaged bool
	}{
		{"good", func(*testing.T, string) {}, false},
		{"sidecar removed", func(t *testing.T, path string) {
			if err := os.Remove(path + freelistSuffix); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"sidecar truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path+freelistSuffix, 10); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"sidecar stale", func(t *testing.T, path string) { // a crash between the commit and the sidecar
			stale := *fl
			stale.txid--
			writeSidecar(t, path, &stale)
		}, false},
		{"id names a page in use", func(t *testing.T, path string) {
			i, v := inUseFlip(t, fl)
			patch(t, path, int64(fl.page)*pageSize+pageHeaderSize+8*int64(i), u64(v))
		}, true},
		{"garbage count", func(t *testing.T, path string) {
			patch(t, path, int64(fl.page)*pageSize+pageCountAt, []byte{0xfe, 0x7f})
		}, true},
		{"garbage overflow count", func(t *testing.T, path string) {
			patch(t, path, int64(fl.page)*pageSize+pageCountAt, []byte{0xff, 0xff})
			patch(t, path, int64(fl.page)*pageSize+pageHeaderSize, u64(1<<40))
		}, true},
		{"zeroed page", func(t *testing.T, path string) {
			patch(t, path, int64(fl.page)*pageSize, make([]byte, pageSize))
		}, true},
		{"id past the end", func(t *testing.T, path string) {
			patch(t, path, int64(fl.page)*pageSize+pageHeaderSize+8*int64(len(fl.ids)-1), u64(1<<20))
		}, true},
		{"ids out of order", func(t *testing.T, path string) {
			patch(t, path, int64(fl.page)*pageSize+pageHeaderSize, u64(fl.ids[1]))
			patch(t, path, int64(fl.page)*pageSize+pageHeaderSize+8, u64(fl.ids[0]))
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := copyQueue(t, orig)
			c.damage(t, path)
			q, err := Open(path, Options{LockTimeout: time.Second})
			if !c.damaged {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if c.name != "good" {
					select {
					case <-q.pages.done:
					default:
						t.Error("Open trusted a freelist it had no matching sidecar for (no walk first)")
					}
				}
				allThere(t, q, bodies)
				return
			}
			if err == nil {
				q.Close()
				t.Fatal("Open accepted a damaged saved freelist")
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "freelist") || !strings.Contains(err.Error(), "relayq compact") {
				t.Fatalf("Open: %v; want ErrDamaged naming the freelist and `relayq compact`", err)
			}
			t.Log(err)
			if problems, err := CheckFile(path, time.Second); err != nil || len(problems) == 0 {
				t.Errorf("CheckFile: %v, %v; want the damaged freelist named", problems, err)
			}
			if _, err := CompactFile(path, time.Second); err != nil {
				t.Fatalf("compact: %v", err)
			}
			q, err = Open(path, Options{LockTimeout: time.Second})
			if err != nil {
				t.Fatalf("Open after compact: %v", err)
			}
			allThere(t, q, bodies)
		})
	}
}

// freelistFile makes a queue file closed cleanly with a saved freelist of
// several pages: 60 messages put, 20 of them deleted. It returns the file
// and the bodies of the messages left.
func freelistFile(t *testing.T) (string, map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{}
	var gone []string
	for i := range 60 {
		body := strings.Repeat("line of a message body\r\n", 40*(i%7+1))
		id := put(t, q, body, "a@x.org")
		if i%3 == 0 {
			gone = append(gone, id)
		} else {
			bodies[id] = body
		}
	}
	if _, err := q.Delete(gone); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	return path, bodies
}

// allThere checks that q holds exactly the messages of bodies, each body
// as put, delivers them all and closes q.
func allThere(t *testing.T, q *Queue, bodies map[string]string) {
	t.Helper()
	defer q.Close()
	for id, body := range bodies {
		m, err := q.Get(id)
		if err != nil {
			t.Fatalf("message %s lost: %v", id, err)
		}
		got, err := io.ReadAll(q.Body(id))
		if err != nil || string(got) != body || q.VerifyBody(m) != nil {
			t.Fatalf("body of %s: %d bytes, %v", id, len(got), err)
		}
	}
	// New mail reuses the free pages: none may be one in use.
	for range 30 {
		put(t, q, strings.Repeat("new\r\n", 3000), "b@x.org")
	}
	if p := q.Check(); len(p) > 0 {
		t.Fatalf("Check: %v", p)
	}
	for id, body := range bodies {
		if got, err := io.ReadAll(q.Body(id)); err != nil || string(got) != body {
			t.Fatalf("body of %s after new mail: %d bytes, %v", id, len(got), err)
		}
	}
	if n := deliverAll(t, q); n != len(bodies)+30 {
		t.Fatalf("delivered %d, want %d", n, len(bodies)+30)
	}
}

// inUseFlip returns an entry of fl and the value one flipped bit of its ID
// makes it: a page in use, still in ascending order if it can be.
func inUseFlip(t *testing.T, fl *savedFreelist) (int, uint64) {
	t.Helper()
	free := map[uint64]bool{}
	high := uint64(0)
	for _, id := range fl.ids {
		free[id] = true
		high = max(high, id)
	}
	inUse := func(v uint64) bool { return v >= 2 && v < high && !free[v] && v != fl.page }
	fallback := -1
	var fallbackV uint64
	for i, id := range fl.ids {
		for bit := range 16 {
			v := id ^ 1<<bit
			if !inUse(v) {
				continue
			}
			if (i == 0 || fl.ids[i-1] < v) && (i == len(fl.ids)-1 || v < fl.ids[i+1]) {
				return i, v
			}
			if fallback < 0 {
				fallback, fallbackV = i, v
			}
		}
	}
	if fallback < 0 {
		t.Fatal("no bit flip of a free ID names a page in use")
	}
	return fallback, fallbackV
}

func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// patch writes b at off in the file at path.
func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func writeSidecar(t *testing.T, path string, fl *savedFreelist) {
	t.Helper()
	if err := os.WriteFile(path+freelistSuffix, fmtSidecar(fl), 0o600); err != nil {
		t.Fatal(err)
	}
}

// copyQueue copies the queue file at path and its sidecar into a new
// directory.
func copyQueue(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "queue.db")
	for _, suffix := range []string{"", freelistSuffix} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestSavedFreelistFileCutShort: a file closed with a saved freelist and
// then cut short (its last pages gone) is refused with ErrDamaged before
// bbolt reads anything, as a cut file, not as a damaged freelist (compact
// cannot mend it).
func TestSavedFreelistFileCutShort(t *testing.T) {
	path, _ := freelistFile(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m, pageSize, ok := readMeta(f)
	f.Close()
	if !ok {
		t.Fatal("no valid meta")
	}
	if err := os.Truncate(path, int64(m.high/2)*pageSize); err != nil {
		t.Fatal(err)
	}
	q, err := Open(path, Options{})
	if err == nil {
		q.Close()
		t.Fatal("Open accepted a file cut short")
	}
	if !errors.Is(err, ErrDamaged) || errors.Is(err, ErrFreelistDamaged) || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("Open: %v; want ErrDamaged saying the file is cut short", err)
	}
}
