package delivery

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"relayq/queue"
	"relayq/transport"
	"relayq/transport/smtptest"
)

// BenchmarkDeliver is the daemon's path from a committed message to its
// recorded delivery. steady is bench/run.sh's load: 10 submitters Put 5 KB
// messages while the Deliverer (default workers and connections) leases
// them as the commits wake it, sends each over a pooled connection to a
// relay offering PIPELINING and CHUNKING (smtptest, in this process),
// records the outcome and logs it (text handler, discarded). backlog is
// a queue of b.N messages drained from a standing start, as after a
// relay outage (all 32 workers busy, most waiting for one of the 5
// connections). Besides allocs/op it reports per message the goroutines
// created and the process's CPU time (the first is the count to compare;
// the CPU time moves with the machine).
//
//	go test -run '^$' -bench Deliver -benchmem -benchtime 4000x ./delivery
func BenchmarkDeliver(b *testing.B) {
	b.Run("steady", func(b *testing.B) {
		r := newDeliverRig(b)
		r.run()
		r.putAll(100) // a warm pool, grown stacks and buffers
		r.drained(100)
		r.measure(b, func() {
			r.putAll(b.N)
			r.drained(b.N + 100)
		})
	})
	b.Run("backlog", func(b *testing.B) {
		r := newDeliverRig(b)
		r.putAll(b.N)
		r.measure(b, func() {
			r.run()
			r.drained(b.N)
		})
	})
}

// deliverRig is BenchmarkDeliver's queue, relay and Deliverer.
type deliverRig struct {
	b     *testing.B
	q     *queue.Queue
	relay *smtptest.Server
	d     *Deliverer
}

func newDeliverRig(b *testing.B) *deliverRig {
	q, err := queue.Open(filepath.Join(b.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	relay := smtptest.NewServer(b, smtptest.Options{Chunking: true})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := transport.New(transport.Options{Network: relay.Network(), Address: relay.Addr(), IgnoreTLS: true, MaxMessages: 1 << 30, Logger: log})
	b.Cleanup(func() { tr.Close() })
	return &deliverRig{b: b, q: q, relay: relay, d: New(Options{Queue: q, Transport: tr, Relay: "test", Logger: log})}
}

// run starts the Deliverer until the benchmark ends.
func (r *deliverRig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = r.d.Run(ctx)
	}()
	r.b.Cleanup(func() { cancel(); <-ran })
}

// putAll queues n messages from 10 submitters at once.
func (r *deliverRig) putAll(n int) {
	env := queue.Envelope{From: "load@bench.test", Recipients: []string{"sink@bench.test"}}
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 80)
	var next atomic.Int64
	var submitters sync.WaitGroup
	for range 10 {
		submitters.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := r.q.Put(context.Background(), env, body); err != nil {
					r.b.Error(err)
					return
				}
			}
		})
	}
	submitters.Wait()
}

// drained waits until the queue is empty and the relay has total
// messages.
func (r *deliverRig) drained(total int) {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		c, err := r.q.Count()
		if err != nil || time.Now().After(deadline) {
			r.b.Fatalf("queue not drained: %+v, %v", c, err)
		}
		if c.Messages == 0 {
			break
		}
	}
	if got := len(r.relay.Messages()); got != total {
		r.b.Fatalf("the relay has %d messages, want %d", got, total)
	}
}

// measure times work and reports its counts per message.
func (r *deliverRig) measure(b *testing.B, work func()) {
	before, cpuBefore := schedCounts(), processCPU()
	b.ResetTimer()
	work()
	b.StopTimer()
	after, cpuAfter := schedCounts(), processCPU()
	n := float64(b.N)
	b.ReportMetric(float64(after.created-before.created)/n, "goroutines/msg")
	b.ReportMetric(float64(cpuAfter-cpuBefore)/n/1e3, "cpu-µs/msg")
}

// sched is what the runtime counted of its scheduling so far.
type sched struct {
	created uint64 // goroutines created
}

func schedCounts() sched {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return sched{created: s[0].Value.Uint64()}
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
