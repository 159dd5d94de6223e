package queue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The hot paths of a message's life in the store, with and without group
// commit: Options.MaxBatch = 1 gives every change its own transaction (two
// fdatasyncs), as a store without a committer would. BenchmarkPut (in
// queue_test.go) covers intake with group commit; these add intake without
// it, and Lease and Record, each from several goroutines as the delivery
// workers call them. Run with:
//
//	go test -run '^$' -bench . -benchmem ./queue

// groupModes are the two committers compared.
var groupModes = []struct {
	name     string
	maxBatch int
}{
	{"group", 0}, // the default: up to 1000 changes a commit
	{"nogroup", 1},
}

var benchBody = bytes.Repeat([]byte("x"), 5000)

var benchEnv = Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}

// benchDelivered is the outcome of a delivery as a Postfix relay answers it.
var benchDelivered = []Outcome{{Address: "b@x.org", Result: Delivered, Relay: "smtp://127.0.0.1:25",
	Reply: &Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"Ok: queued as 4dQxYz1kLmz9"}, Stage: "dot"}}}

// fillBench puts n messages into q from 64 goroutines (group commit or
// not, whatever q does).
func fillBench(b *testing.B, q *Queue, n int) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := q.Put(context.Background(), benchEnv, benchBody); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// parallel runs op n times from workers goroutines and reports messages per
// second and the fsyncs each cost, from the committer's counters.
func parallel(b *testing.B, q *Queue, workers, n int, op func(i int) error) {
	b.Helper()
	before, pagesBefore := q.Stats(), pagesWritten(q)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	b.ResetTimer()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := op(int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	elapsed := time.Since(start)
	after := q.Stats()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	if changes := after.Changes - before.Changes; changes > 0 {
		b.ReportMetric(2*float64(after.Commits-before.Commits)/float64(n), "fsyncs/msg")
	}
	reportPages(b, q, pagesBefore, n)
}

func pagesWritten(q *Queue) int64 {
	st := q.db.Stats()
	return st.TxStats.GetWrite()
}

// reportPages reports the pages the commits since pagesBefore (bbolt's
// count of page writes) wrote per message: each is a pwrite, and the
// pages a commit touches are most of its CPU besides the fdatasyncs.
func reportPages(b *testing.B, q *Queue, pagesBefore int64, n int) {
	b.ReportMetric(float64(pagesWritten(q)-pagesBefore)/float64(n), "pages/msg")
}

// BenchmarkPutNoGroupCommit is BenchmarkPut's 16 submitters with a commit
// of their own each: what group commit saves.
func BenchmarkPutNoGroupCommit(b *testing.B) {
	q, _ := openTest(b, Options{MaxBatch: 1})
	b.SetBytes(int64(len(benchBody)))
	parallel(b, q, 16, b.N, func(int) error {
		_, err := q.Put(context.Background(), benchEnv, benchBody)
		return err
	})
}

// BenchmarkLease takes due messages one at a time, as each of 4 workers
// does, from a queue of b.N. Nothing is recorded, so each Lease walks past
// every message leased before it: a worst case (the daemon holds at most
// [delivery] workers leases at once) that keeps the walk cheap.
func BenchmarkLease(b *testing.B) {
	for _, mode := range groupModes {
		b.Run(mode.name, func(b *testing.B) {
			q, _ := openTest(b, Options{MaxBatch: mode.maxBatch})
			fillBench(b, q, b.N)
			parallel(b, q, 4, b.N, func(int) error {
				ls, err := q.Lease(1)
				if err == nil && len(ls) != 1 {
					err = fmt.Errorf("leased %d messages, want 1", len(ls))
				}
				return err
			})
		})
	}
}

// BenchmarkRecord records delivery (the message leaves the queue) for b.N
// leased messages from 4 workers.
func BenchmarkRecord(b *testing.B) {
	for _, mode := range groupModes {
		b.Run(mode.name, func(b *testing.B) {
			q, _ := openTest(b, Options{MaxBatch: mode.maxBatch})
			fillBench(b, q, b.N)
			leases, err := q.Lease(b.N)
			if err != nil || len(leases) != b.N {
				b.Fatalf("lease: %d messages, %v", len(leases), err)
			}
			delivered := benchDelivered
			parallel(b, q, 4, b.N, func(i int) error {
				_, err := q.Record(leases[i], delivered)
				return err
			})
		})
	}
}

// BenchmarkLifecycle is a message's whole stay: Put by 16 submitters while
// 4 workers Lease and Record (delivered) alongside them, as in the daemon
// under load. msgs/s runs until the last message has left the queue. The
// queue grows to over a thousand messages there; "group-backlog30" is
// closer to bench/run.sh, where delivery keeps up: 10 submitters, 8
// workers, and a submitter waits while 30 messages are queued.
func BenchmarkLifecycle(b *testing.B) {
	for _, mode := range groupModes {
		b.Run(mode.name, func(b *testing.B) {
			lifecycle(b, Options{MaxBatch: mode.maxBatch}, 16, 4, 0)
		})
	}
	b.Run("group-backlog30", func(b *testing.B) { lifecycle(b, Options{}, 10, 8, 30) })
}

// lifecycle runs BenchmarkLifecycle's load: b.N messages put by submitters
// and delivered by workers, with at most backlog queued (0: no bound).
func lifecycle(b *testing.B, opts Options, submitters, workers, backlog int) {
	q, _ := openTest(b, opts)
	b.SetBytes(int64(len(benchBody)))
	before, pagesBefore := q.Stats(), pagesWritten(q)
	d := &deliverer{q: q, n: int64(b.N), finished: make(chan struct{})}
	var slots chan struct{}
	if backlog > 0 {
		slots = make(chan struct{}, backlog)
		d.delivered = func() { <-slots }
	}
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Go(func() { d.run(b, benchDelivered) })
	}
	var next atomic.Int64
	for range submitters {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if slots != nil {
					slots <- struct{}{}
				}
				if _, err := q.Put(context.Background(), benchEnv, benchBody); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	after := q.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(2*float64(after.Commits-before.Commits)/float64(b.N), "fsyncs/msg")
	// Per commit: what one transaction writes, most of it a leaf and a
	// branch per bucket it touches, whatever its number of changes.
	if commits := after.Commits - before.Commits; commits > 0 {
		b.ReportMetric(float64(after.Changes-before.Changes)/float64(commits), "changes/commit")
		b.ReportMetric(float64(pagesWritten(q)-pagesBefore)/float64(commits), "pages/commit")
	}
	reportPages(b, q, pagesBefore, b.N)
}

// deliverer plays the delivery workers: lease due messages one at a time
// and record them delivered, until n are.
type deliverer struct {
	q        *Queue
	n        int64
	done     atomic.Int64
	finished chan struct{} // closed when done reaches n
	// delivered, when set, is called after each message is recorded.
	delivered func()
}

func (d *deliverer) run(b *testing.B, outcomes []Outcome) {
	for d.done.Load() < d.n {
		changed := d.q.Changed()
		ls, err := d.q.Lease(1)
		if err != nil {
			b.Error(err)
			return
		}
		for _, l := range ls {
			if _, err := d.q.Record(l, outcomes); err != nil {
				b.Error(err)
				return
			}
			if d.delivered != nil {
				d.delivered()
			}
			if d.done.Add(1) == d.n {
				close(d.finished)
			}
		}
		if len(ls) == 0 {
			select { // nothing due: wait for a Put, or the end
			case <-changed:
			case <-d.finished:
			}
		}
	}
}

// BenchmarkVerifyBody is what delivery adds to each attempt by checking
// the body against its checksum before it sends anything (VerifyBody: one
// read transaction and a CRC-32C over the mapped chunks), for a typical
// body and large ones. Compare with BenchmarkLifecycle's time per message.
func BenchmarkVerifyBody(b *testing.B) {
	for _, size := range []int{len(benchBody), 1 << 20, 20 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			q, _ := openTest(b, Options{})
			id, err := q.Put(context.Background(), benchEnv, bytes.Repeat([]byte("x"), size))
			if err != nil {
				b.Fatal(err)
			}
			m, err := q.Get(id)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			for b.Loop() {
				if err := q.VerifyBody(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoom is intake's check at every MAIL with the file system far
// from the headroom: a statfs at most every freshFor, not one a call.
func BenchmarkRoom(b *testing.B) {
	q, _ := openTest(b, Options{MinFree: 1 << 20})
	for b.Loop() {
		if err := q.Room(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBodyRead is delivery's read of a stored body, through Body with
// the 32 KiB buffer transport reads into, for a typical body (packed
// chunks) and a large one (a bucket of 256 KiB chunks).
func BenchmarkBodyRead(b *testing.B) {
	for _, size := range []int{len(benchBody), 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			q, _ := openTest(b, Options{})
			id, err := q.Put(context.Background(), benchEnv, bytes.Repeat([]byte("x"), size))
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(size))
			for b.Loop() {
				r, n := q.Body(id), 0
				for {
					m, err := r.Read(buf)
					n += m
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				if n != size {
					b.Fatalf("read %d bytes, want %d", n, size)
				}
			}
		})
	}
}

// BenchmarkVerifiedBody is delivery's read of a body it sends from memory:
// /twice is VerifyBody and then Body into the transport's 32 KiB buffer (two
// read transactions, two walks of the chunks), /once AppendVerifiedBody
// into a reused buffer (one of each).
func BenchmarkVerifiedBody(b *testing.B) {
	q, _ := openTest(b, Options{})
	id, err := q.Put(context.Background(), benchEnv, benchBody)
	if err != nil {
		b.Fatal(err)
	}
	m, err := q.Get(id)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	b.Run("twice", func(b *testing.B) {
		for b.Loop() {
			if err := q.VerifyBody(m); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(q.Body(id), buf[:len(benchBody)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("once", func(b *testing.B) {
		for b.Loop() {
			if _, err := q.AppendVerifiedBody(buf[:0], m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
