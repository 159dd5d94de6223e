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
// recorded delivery, as under bench/run.sh's load: 10 submitters Put 5 KB
// messages, the Deliverer (default workers) leases them as the commits
// wake it, sends each over a pooled connection to a relay offering
// PIPELINING and CHUNKING (smtptest, in this process), records the
// outcome and logs it (text handler, discarded). Besides allocs/op it
// reports per message the goroutines created, the scheduling events
// (runnable goroutines put on a processor: every hand-off between
// goroutines is one) and the process's CPU time; the first two are the
// counts to compare, the CPU time moves with the machine.
//
//	go test -run '^$' -bench Deliver -benchmem -benchtime 4000x ./delivery
func BenchmarkDeliver(b *testing.B) {
	q, err := queue.Open(filepath.Join(b.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	relay := smtptest.NewServer(b, smtptest.Options{Chunking: true})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := transport.New(transport.Options{Network: relay.Network(), Address: relay.Addr(), IgnoreTLS: true, MaxMessages: 1 << 30, Logger: log})
	defer tr.Close()
	d := New(Options{Queue: q, Transport: tr, Relay: "test", Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = d.Run(ctx)
	}()
	defer func() { cancel(); <-ran }()

	env := queue.Envelope{From: "load@bench.test", Recipients: []string{"sink@bench.test"}}
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 80)
	deliverAll := func(n int) {
		var next atomic.Int64
		var submitters sync.WaitGroup
		for range 10 {
			submitters.Go(func() {
				for next.Add(1) <= int64(n) {
					if _, err := q.Put(context.Background(), env, body); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		submitters.Wait()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			c, err := q.Count()
			if err != nil || time.Now().After(deadline) {
				b.Fatalf("queue not drained: %+v, %v", c, err)
			}
			if c.Messages == 0 {
				return
			}
		}
	}
	deliverAll(100) // a warm pool, grown stacks and buffers

	before, cpuBefore := schedCounts(), processCPU()
	b.ResetTimer()
	deliverAll(b.N)
	b.StopTimer()
	after, cpuAfter := schedCounts(), processCPU()
	n := float64(b.N)
	b.ReportMetric(float64(after.created-before.created)/n, "goroutines/msg")
	b.ReportMetric(float64(after.scheduled-before.scheduled)/n, "sched/msg")
	b.ReportMetric(float64(cpuAfter-cpuBefore)/n/1e3, "cpu-µs/msg")
	if got := len(relay.Messages()); got != b.N+100 {
		b.Fatalf("the relay has %d messages, want %d", got, b.N+100)
	}
}

// sched is what the runtime counted of its scheduling so far.
type sched struct {
	created   uint64 // goroutines created
	scheduled uint64 // times a runnable goroutine began to run
}

func schedCounts() sched {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}, {Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	var out sched
	out.created = s[0].Value.Uint64()
	for _, c := range s[1].Value.Float64Histogram().Counts {
		out.scheduled += c
	}
	return out
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
