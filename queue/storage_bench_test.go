package queue

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// BenchmarkStorage measures what a queue costs on disk, run by hand (it
// ignores b.N and takes minutes at 100k):
//
//	RELAYQ_STORAGE_N=100000 go test -run '^$' -bench Storage -benchtime 1x -timeout 2h ./queue
//
// It fills a new store with N messages of 2 KB (one recipient, as from
// cron) through Put from 64 goroutines, then reports the file's bytes per
// message and each bucket's share, the bytes written and commits per
// message while filling, the time Open takes with the file in the page
// cache (warm) and after the file's pages were dropped from it (cold:
// posix_fadvise DONTNEED on the file, which drops this file's cached
// pages only; `echo 3 > /proc/sys/vm/drop_caches` as root does it for the
// whole machine), then delivers every message (each leaves an archive
// record) and reports the history's bytes per delivered message, the
// room the file takes on the disk once GiveBack has run, and the file's
// length once empty. RELAYQ_STORAGE_DIR puts the file elsewhere
// than the test's temp dir (on the disk to measure).
func BenchmarkStorage(b *testing.B) {
	n := 10000
	if s := os.Getenv("RELAYQ_STORAGE_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	if d := os.Getenv("RELAYQ_STORAGE_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "storage-bench-*"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	path := filepath.Join(dir, "queue.db")
	// RELAYQ_STORAGE_FREELIST=sync: bbolt writes its freelist at every
	// commit and Open reads it instead of walking the file.
	opts := Options{syncFreelist: os.Getenv("RELAYQ_STORAGE_FREELIST") == "sync"}
	body := storageBody(2048)
	env := Envelope{
		From: "cron@host.example.org", Recipients: []string{"root@example.org"},
		Submitter: Submitter{UID: 0, Via: "socket", User: "root", Unit: "cron.service"},
	}
	report := func(name string, v float64) {
		b.ReportMetric(v, name)
		fmt.Fprintf(os.Stderr, "storage n=%d: %s = %.2f\n", n, name, v)
	}

	q, err := Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	written := processWrites(b)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := q.Put(context.Background(), env, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	st := q.Stats()
	report("put-µs/msg", float64(elapsed.Microseconds())/float64(n))
	report("put-written-B/msg", float64(processWrites(b)-written)/float64(n))
	report("put-commits/msg", float64(st.Commits)/float64(n))
	bucketReport(b, q, n, report)
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	report("file-B/msg", float64(fileSize(b, path))/float64(n))
	report("open-warm-ms", openTime(b, path, opts, false))
	report("open-cold-ms", openTime(b, path, opts, true))

	q, err = Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	written = processWrites(b)
	start = time.Now()
	delivered := 0
	for {
		ls, err := q.Lease(1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(ls) == 0 {
			break
		}
		var wg sync.WaitGroup
		for i := range 32 {
			wg.Go(func() {
				for j := i; j < len(ls); j += 32 {
					if _, err := q.RecordAttempt(ls[j], storageAttempt, storageDelivered); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		delivered += len(ls)
	}
	if delivered != n {
		b.Fatalf("delivered %d of %d", delivered, n)
	}
	report("record-µs/msg", float64(time.Since(start).Microseconds())/float64(n))
	report("record-written-B/msg", float64(processWrites(b)-written)/float64(n))
	for range 2 { // a page is given back when it was free at the pass before too
		if _, err := q.GiveBack(); err != nil {
			b.Fatal(err)
		}
	}
	report("drained-disk-MiB", float64(diskBytes(b, path))/(1<<20))
	_ = q.db.View(func(tx *bolt.Tx) error {
		report("history-B/msg", float64(bucketBytes(tx, bucketArchive))/float64(n))
		return nil
	})
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	report("drained-file-MiB", float64(fileSize(b, path))/(1<<20))
	report("drained-open-cold-ms", openTime(b, path, opts, true))
}

var (
	storageAttempt   = Attempt{Relay: "smtp://relay.example.net:25", Duration: 12 * time.Millisecond}
	storageDelivered = []Outcome{{
		Address: "root@example.org", Result: Delivered, Relay: "smtp://relay.example.net:25",
		Reply: &Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"Ok: queued as 4dQxYz1kLmz9"}, Stage: "dot"},
	}}
)

// storageBody is a message of size bytes in 78-byte CRLF lines.
func storageBody(size int) []byte {
	line := bytes.Repeat([]byte("x"), 76)
	var body []byte
	for len(body) < size {
		body = append(body, line...)
		body = append(body, "\r\n"...)
	}
	return body[:size]
}

// bucketReport prints each top-level bucket's pages per message.
func bucketReport(b *testing.B, q *Queue, n int, report func(string, float64)) {
	b.Helper()
	_ = q.db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if v := bucketBytes(tx, name); v > 0 {
				report(string(name)+"-B/msg", float64(v)/float64(n))
			}
		}
		return nil
	})
}

// bucketBytes is the bytes of the pages a bucket (and the buckets in it)
// holds, inline buckets counted in their parent's.
func bucketBytes(tx *bolt.Tx, name []byte) int {
	s := tx.Bucket(name).Stats()
	return s.BranchAlloc + s.LeafAlloc
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// openTime is how long Open of the store at path takes, in milliseconds;
// cold drops the file's pages from the page cache first.
func openTime(b testing.TB, path string, opts Options, cold bool) float64 {
	b.Helper()
	if cold {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	start := time.Now()
	q, err := Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	return ms
}

// diskBytes is the room the file at path takes on the disk.
func diskBytes(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// processWrites is the bytes this process has had written to storage
// (write_bytes of /proc/self/io).
func processWrites(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skip("no /proc/self/io:", err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("write_bytes: ")); ok {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			return n
		}
	}
	return 0
}
