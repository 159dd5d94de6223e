package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openTest opens a store in a temp dir and checks its integrity when the
// test ends, the way bbolt's own tests do.
func openTest(t testing.TB, opts Options) (*Queue, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "queue.db")
	return openAt(t, path, opts), path
}

// openAt is openTest with the database file at path.
func openAt(t testing.TB, path string, opts Options) *Queue {
	t.Helper()
	q, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range q.Check() {
			t.Errorf("integrity: %v", p)
		}
		q.Close()
	})
	return q
}

func put(t testing.TB, q *Queue, body string, rcpts ...string) string {
	t.Helper()
	id, err := q.Put(context.Background(), Envelope{From: "cron@example.org", Recipients: rcpts, Submitter: Submitter{UID: 1000, Via: "socket"}}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func leaseOne(t *testing.T, q *Queue) *Lease {
	t.Helper()
	ls, err := q.Lease(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 {
		t.Fatalf("leased %d messages, want 1", len(ls))
	}
	return ls[0]
}

func TestPutLeaseDeliver(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	id := put(t, q, "Subject: hi\r\n\r\nbody\r\n", "a@example.com", "b@example.com")
	if !ValidID(id) {
		t.Fatalf("id %q is not a valid queue ID", id)
	}
	l := leaseOne(t, q)
	if l.ID != id || l.From != "cron@example.org" || len(l.Recipients) != 2 || l.Submitter.UID != 1000 {
		t.Fatalf("leased %+v", l.Message)
	}
	body, err := io.ReadAll(q.Body(id))
	if err != nil || string(body) != "Subject: hi\r\n\r\nbody\r\n" {
		t.Fatalf("body %q, %v", body, err)
	}
	if more, _ := q.Lease(5); len(more) != 0 {
		t.Fatalf("a leased message was leased again: %d", len(more))
	}
	ok := &Reply{Code: 250, Enhanced: "2.0.0", Lines: []string{"Ok: queued as X1"}}
	if _, err := q.Record(l, []Outcome{{Address: "a@example.com", Result: Delivered, Reply: ok}, {Address: "b@example.com", Result: Delivered, Reply: ok}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Count(); c.Messages != 0 || c.Dead != 0 {
		t.Fatalf("after delivery: %+v", c)
	}
	if _, err := io.ReadAll(q.Body(id)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("body still there after delivery: %v", err)
	}
}

func TestPartialFailureAndDeferral(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	id := put(t, q, "x\r\n", "ok@x.org", "gone@x.org", "later@x.org")
	l := leaseOne(t, q)
	next := clk.Now().Add(5 * time.Minute)
	rec, err := q.Record(l, []Outcome{
		{Address: "ok@x.org", Result: Delivered, Reply: &Reply{Code: 250}},
		{Address: "gone@x.org", Result: Failed, Reply: &Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"no such user"}}},
		{Address: "later@x.org", Result: Deferred, Reply: &Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"try later"}}, NextAttempt: next},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Attempts != 1 || !rec.NextAttempt.Equal(next) {
		t.Fatalf("recorded %+v", rec)
	}
	dead, _ := q.ListDead()
	if len(dead) != 1 || len(dead[0].Recipients) != 1 || dead[0].Recipients[0].Address != "gone@x.org" ||
		dead[0].Recipients[0].LastReply.String() != "550 5.1.1 no such user" {
		t.Fatalf("dead letters: %+v", dead)
	}
	if ls, _ := q.Lease(1); len(ls) != 0 {
		t.Fatal("deferred message leased before its time")
	}
	if due, ok := q.NextDue(); !ok || !due.Equal(next) {
		t.Fatalf("NextDue = %v %v, want %v", due, ok, next)
	}
	clk.Advance(5 * time.Minute)
	l = leaseOne(t, q)
	if p := l.Pending(); len(p) != 1 || p[0].Address != "later@x.org" || p[0].Attempts != 1 {
		t.Fatalf("pending on retry: %+v", p)
	}
	if _, err := q.Record(l, []Outcome{{Address: "later@x.org", Result: Delivered}}); err != nil {
		t.Fatal(err)
	}
	// The message left the queue, but the dead letter keeps the body.
	if c, _ := q.Count(); c.Messages != 0 || c.Dead != 1 {
		t.Fatalf("counts %+v", c)
	}
	if body, err := io.ReadAll(q.Body(id)); err != nil || string(body) != "x\r\n" {
		t.Fatalf("dead letter body %q %v", body, err)
	}
}

func TestLargeBodyIsChunkedAndReadBack(t *testing.T) {
	q, _ := openTest(t, Options{})
	body := bytes.Repeat([]byte("0123456789abcdef\r\n"), (3*chunkSize)/18+7)
	id := put(t, q, string(body), "a@x.org")
	got, err := io.ReadAll(q.Body(id))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %d bytes (want %d), err %v", len(got), len(body), err)
	}
	m, _ := q.Get(id)
	if m.Size != int64(len(body)) {
		t.Fatalf("size %d", m.Size)
	}
}

func TestExpiredLeaseIsTakenOverAndLateRecordRefused(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now, LeaseTimeout: time.Minute})
	put(t, q, "x\r\n", "a@x.org")
	stale := leaseOne(t, q)
	clk.Advance(61 * time.Second)
	fresh := leaseOne(t, q)
	if _, err := q.Record(stale, []Outcome{{Address: "a@x.org", Result: Delivered}}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("record with a stale lease: %v, want ErrLeaseLost", err)
	}
	if _, err := q.Record(fresh, []Outcome{{Address: "a@x.org", Result: Delivered}}); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseMakesDueAgain(t *testing.T) {
	q, _ := openTest(t, Options{})
	put(t, q, "x\r\n", "a@x.org")
	l := leaseOne(t, q)
	if err := q.Release(l); err != nil {
		t.Fatal(err)
	}
	leaseOne(t, q)
}

func TestLeasesLeftByACrashAreReclaimedOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{LeaseTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	put(t, q, "x\r\n", "a@x.org")
	leaseOne(t, q)
	q.Close() // as if the process died holding the lease
	q, err = Open(path, Options{LeaseTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	l := leaseOne(t, q)
	if l.Attempts != 0 {
		t.Fatalf("attempts %d after reclaim", l.Attempts)
	}
	if p := q.Check(); len(p) != 0 {
		t.Fatal(p)
	}
}

func TestBackoffStateSurvivesReopen(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "queue.db")
	q, _ := Open(path, Options{Now: clk.Now})
	put(t, q, "x\r\n", "a@x.org")
	next := clk.Now().Add(10 * time.Minute)
	if _, err := q.Record(leaseOne(t, q), []Outcome{{Address: "a@x.org", Result: Deferred, NextAttempt: next}}); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q, _ = Open(path, Options{Now: clk.Now})
	defer q.Close()
	if ls, _ := q.Lease(1); len(ls) != 0 {
		t.Fatal("restart made a deferred message due at once")
	}
	clk.Advance(10 * time.Minute)
	l := leaseOne(t, q)
	if l.Recipients[0].Attempts != 1 || l.Recipients[0].Status != StatusDeferred {
		t.Fatalf("after reopen: %+v", l.Recipients[0])
	}
}

func TestSecondOpenFailsWithErrLocked(t *testing.T) {
	_, path := openTest(t, Options{})
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("second open did not give up in time")
	}
}

func TestFullStoreRefusesPutAndKeepsWhatItHas(t *testing.T) {
	q, _ := openTest(t, Options{MaxSize: 1 << 20})
	first := put(t, q, "first\r\n", "a@x.org")
	big := bytes.Repeat([]byte("x"), 2<<20)
	_, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, big)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("put over MaxSize: %v, want ErrFull", err)
	}
	if _, err := q.Get(first); err != nil {
		t.Fatalf("earlier message gone: %v", err)
	}
	put(t, q, "small again\r\n", "c@x.org")
}

func TestDurabilitySettings(t *testing.T) {
	o := boltOptions(Options{LockTimeout: time.Second})
	if o.NoSync || o.NoGrowSync || o.Timeout == 0 {
		t.Fatalf("unsafe bbolt options: %+v", o)
	}
}

func TestGroupCommitSharesCommits(t *testing.T) {
	q, _ := openTest(t, Options{})
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, []byte("x\r\n")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s := q.Stats()
	if s.Changes != n {
		t.Fatalf("changes %d, want %d", s.Changes, n)
	}
	if s.Commits >= n {
		t.Fatalf("%d commits for %d concurrent puts: no grouping", s.Commits, n)
	}
	t.Logf("%d puts in %d commits", n, s.Commits)
}

func TestIDsSortByTime(t *testing.T) {
	var src idSource
	now := time.Now()
	prev := src.next(now)
	for i := 0; i < 1000; i++ {
		id := src.next(now.Add(-time.Duration(i))) // clock stepping back
		if id <= prev || !ValidID(id) {
			t.Fatalf("id %q after %q", id, prev)
		}
		prev = id
	}
	for _, bad := range []string{"", "short", "0123456789ABCDEFGHIU", "0123456789abcdefghjk"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

func TestCheckFindsDamage(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := put(t, q, "x\r\n", "a@x.org")
	// Remove the schedule entry behind the store's back.
	m, _ := q.Get(id)
	if err := q.commit.commit(func(tx *boltTx) error {
		return tx.Bucket(bucketSchedule).Delete(scheduleKey(m.dueAt(), id))
	}); err != nil {
		t.Fatal(err)
	}
	p := q.Check()
	if len(p) != 1 || !bytes.Contains([]byte(p[0].Error()), []byte("no schedule entry")) {
		t.Fatalf("check found %v", p)
	}
	// Put it back so the cleanup check passes.
	if err := q.commit.commit(func(tx *boltTx) error {
		return tx.Bucket(bucketSchedule).Put(scheduleKey(m.dueAt(), id), nil)
	}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPut measures durable intake with 1, 16 and 64 concurrent
// submitters and reports how many commits (each two fdatasyncs) a message
// costs: group commit at work.
func BenchmarkPut(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 5000)
	for _, submitters := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("submitters=%d", submitters), func(b *testing.B) {
			q, _ := openTest(b, Options{})
			env := Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			var wg sync.WaitGroup
			per := (b.N + submitters - 1) / submitters
			start := time.Now()
			for s := 0; s < submitters; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						if _, err := q.Put(context.Background(), env, body); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			st := q.Stats()
			total := per * submitters
			b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(2*float64(st.Commits)/float64(st.Changes), "fsyncs/msg")
		})
	}
}

type boltTx = bolt.Tx

// A Put racing with Close either commits (and the message is there after
// reopening) or returns ErrClosed; it never hangs and never reports success
// for a message that is not stored.
func TestPutRacingCloseCommitsOrRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				id, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, []byte("x\r\n"))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Put still blocked 10s after Close")
	}
	q, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, id := range acked {
		if _, err := q.Get(id); err != nil {
			t.Fatalf("acknowledged %s missing after reopen: %v", id, err)
		}
	}
	t.Logf("%d puts acknowledged before close, all present", len(acked))
}

// TestPutKeepsNoBody: once Put has returned, intake may reuse the buffer
// it passed (its pooled normaliser buffer): what is stored and delivered
// is what the buffer held at the call, for bodies of each layout, also
// when other Puts commit with it.
func TestPutKeepsNoBody(t *testing.T) {
	q, _ := openTest(t, Options{})
	var wg sync.WaitGroup
	for i, size := range []int{10, 3000, 100 << 10} {
		wg.Go(func() {
			buf := bytes.Repeat([]byte{'a' + byte(i)}, size)
			id, err := q.Put(context.Background(), Envelope{From: "a@x.org", Recipients: []string{"b@x.org"}}, buf)
			if err != nil {
				t.Error(err)
				return
			}
			want := bytes.Clone(buf)
			for j := range buf {
				buf[j] = 'z' // reused for the next message
			}
			got, err := io.ReadAll(q.Body(id))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("body of %d bytes read back as %d bytes (%.10q…), %v", size, len(got), got, err)
			}
		})
	}
	wg.Wait()
}
