package queue

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPipeline is bench/run.sh's load on the store alone: 10
// submitters each Put a message, spend pipelineExchange on the next one's
// SMTP exchange (off the CPU, as the load generator's round trips are),
// and Put again; meanwhile a dispatcher leases what is due, as delivery
// does (woken by Changed), and a worker per lease spends pipelineSend on
// the relay and records the delivery. It reports the fsyncs per message
// (the commits both halves shared: the number that timing on a busy
// machine blurs least), the process's CPU time (user + system) per
// message, the submitters' wait for their Put and the time from a Put's
// return to its message's lease, and the in-flight journal's writes per
// message (inflight.go).
//
//	go test -run '^$' -bench Pipeline -benchtime 5000x ./queue
func BenchmarkPipeline(b *testing.B) {
	q, _ := openTest(b, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu       sync.Mutex
		putAt    = map[string]time.Time{}
		putWait  []time.Duration
		leaseLag []time.Duration
		recorded atomic.Int64
		workers  sync.WaitGroup
	)
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		for ctx.Err() == nil {
			changed := q.Changed()
			leases, err := q.Lease(32)
			if err != nil {
				b.Error(err)
				return
			}
			now := time.Now()
			for _, l := range leases {
				mu.Lock()
				lag := time.Duration(0) // leased before its Put had returned
				if at, ok := putAt[l.ID]; ok {
					lag = now.Sub(at)
				}
				leaseLag = append(leaseLag, lag)
				mu.Unlock()
				workers.Go(func() {
					time.Sleep(pipelineSend)
					if _, err := q.Record(l, benchDelivered); err != nil {
						b.Error(err)
					}
					recorded.Add(1)
				})
			}
			if len(leases) == 0 {
				select {
				case <-changed:
				case <-ctx.Done():
				}
			}
		}
	}()
	before, cpuBefore, journalBefore := q.Stats(), cpuTime(), q.inflightWrites()
	var next atomic.Int64
	var submitters sync.WaitGroup
	b.ResetTimer()
	for range 10 {
		submitters.Go(func() {
			for next.Add(1) <= int64(b.N) {
				time.Sleep(pipelineExchange)
				start := time.Now()
				id, err := q.Put(context.Background(), benchEnv, benchBody)
				if err != nil {
					b.Error(err)
					return
				}
				end := time.Now()
				mu.Lock()
				putAt[id] = end
				putWait = append(putWait, end.Sub(start))
				mu.Unlock()
			}
		})
	}
	submitters.Wait()
	for recorded.Load() < int64(b.N) && !b.Failed() {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-dispatched
	workers.Wait()
	after := q.Stats()
	b.ReportMetric(float64((cpuTime()-cpuBefore).Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(2*float64(after.Commits-before.Commits)/float64(b.N), "fsyncs/msg")
	b.ReportMetric(float64(q.inflightWrites()-journalBefore)/float64(b.N), "journal-writes/msg")
	b.ReportMetric(float64(median(putWait).Microseconds()), "put-µs")
	b.ReportMetric(float64(median(leaseLag).Microseconds()), "lease-lag-µs")
}

// The off-CPU parts of a message's life in BenchmarkPipeline: the
// submitter's next SMTP exchange, and the worker's attempt at the relay.
const (
	pipelineExchange = 500 * time.Microsecond
	pipelineSend     = 300 * time.Microsecond
)

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// inflightWrites is how many writes the in-flight journal has made.
func (q *Queue) inflightWrites() int {
	q.inflight.mu.Lock()
	defer q.inflight.mu.Unlock()
	return q.inflight.writes
}
