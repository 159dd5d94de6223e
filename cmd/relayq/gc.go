package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The daemon's garbage collector setting. relayq's live heap is small (a
// few MiB: sessions, workers, the in-memory schedule), and with Go's default
// GOGC=100 the collector runs each time the heap doubles: every few hundred
// messages under load, each cycle waking threads and scanning every
// goroutine's stack. On the benchmark (bench/run.sh) that cost about 15% of
// relayq's CPU and as much end-to-end throughput.
//
// tuneGC lets the heap grow by gcHeadroom past the live heap instead, up to
// gcMaxPercent of it, and never by less than the default's 100%: a small
// heap is collected rarely, a large one (a big backlog's schedule) as often
// as by default, so memory stays flat as the queue grows. It looks at the
// live heap after every collection, so the setting follows the heap within
// one cycle.

const (
	// gcHeadroom is what the heap may grow past the live heap before a
	// collection, while that is between 100% and gcMaxPercent of it.
	gcHeadroom = 16 << 20
	// gcMaxPercent bounds the growth when the live heap is tiny (at start,
	// at rest), so that a burst right after a quiet spell cannot balloon
	// the heap before the next collection corrects the setting.
	gcMaxPercent = 400
)

// gcPercent is the GOGC for a live heap of live bytes, in steps of 25 so
// that small changes of the heap do not reset the collector each cycle.
func gcPercent(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	p := min(gcMaxPercent, max(100, int(gcHeadroom*100/live)))
	return p / 25 * 25
}

// tuneGC sets the collector's percentage from the live heap, after each
// collection, until ctx ends. An operator's GOGC in the environment is left
// as it is.
func tuneGC(ctx context.Context) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	t := &gcTuner{ctx: ctx, current: gcMaxPercent, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	debug.SetGCPercent(t.current)
	t.arm()
}

type gcTuner struct {
	ctx     context.Context
	current int
	sample  []metrics.Sample
}

// gcSentinel is allocated only to become garbage: its cleanup runs after
// the next collection. Large enough to stay out of the tiny allocator,
// which would keep it alive with its neighbours.
type gcSentinel [32]byte

func (t *gcTuner) arm() {
	runtime.AddCleanup(new(gcSentinel), func(t *gcTuner) { t.afterCollection() }, t)
}

// afterCollection runs on the runtime's cleanup goroutine, one at a time.
func (t *gcTuner) afterCollection() {
	if t.ctx.Err() != nil {
		return
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return // not a metric this runtime has: keep the setting, stop looking
	}
	if p := gcPercent(t.sample[0].Value.Uint64()); p != t.current {
		debug.SetGCPercent(p)
		t.current = p
	}
	t.arm()
}

// Memory back to the system once the daemon is quiet. After a burst (a
// backlog drained, a flood of submissions) the heap the collector freed
// stays resident: the scavenger keeps about the last collection's goal
// (live heap + gcHeadroom), and a quiet daemon allocates too little to
// start another cycle soon. Draining 200,000 queued messages left RssAnon
// at 29 MiB for a live heap of 6 MiB, for as long as the daemon stayed
// quiet.
//
// releaseWhenIdle looks every idleCheck: when the heap grew by less than
// idleAllocs since the last look (under one collection's worth, so a
// forced collection costs no more than the daemon's own would) and more
// than idleSurplus of the heap is resident beyond the live heap, it hands
// that back with one debug.FreeOSMemory: a collection of the live heap
// (milliseconds) and a release of every free span. A quiet daemon still
// allocates a little (the minute's give-back pass, the audit), so the
// surplus comes back slowly; it is released again when it passes
// idleSurplus, at most once per idleCheck.

const (
	idleCheck   = 30 * time.Second
	idleAllocs  = gcHeadroom
	idleSurplus = 8 << 20
)

// releaseWhenIdle returns idle memory to the system, every idleCheck, until
// ctx ends. It runs whether or not the operator set GOGC.
func releaseWhenIdle(ctx context.Context) {
	r := newIdleReleaser()
	go func() {
		tick := time.NewTicker(idleCheck)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				r.check()
			}
		}
	}()
}

// idleReleaser remembers the heap's allocations at its last look.
type idleReleaser struct {
	allocated uint64
	sample    []metrics.Sample
}

// The runtime's metrics idleReleaser reads, in this order.
var idleMetrics = []string{
	"/gc/heap/allocs:bytes",              // allocated since start
	"/gc/heap/live:bytes",                // live after the last collection
	"/memory/classes/heap/objects:bytes", // resident: objects, dead ones not yet swept included
	"/memory/classes/heap/unused:bytes",  // resident: unused room in spans
	"/memory/classes/heap/free:bytes",    // resident: free spans not yet returned
}

func newIdleReleaser() *idleReleaser {
	r := &idleReleaser{}
	for _, name := range idleMetrics {
		r.sample = append(r.sample, metrics.Sample{Name: name})
	}
	r.read()
	return r
}

// read refreshes the sample; it reports false when the runtime lacks one
// of the metrics.
func (r *idleReleaser) read() bool {
	metrics.Read(r.sample)
	for _, s := range r.sample {
		if s.Value.Kind() != metrics.KindUint64 {
			return false
		}
	}
	return true
}

// check returns the heap's surplus to the system if the daemon has been
// idle since the last check, and reports whether it did.
func (r *idleReleaser) check() bool {
	if !r.read() {
		return false
	}
	v := func(i int) uint64 { return r.sample[i].Value.Uint64() }
	allocated, live := v(0), v(1)
	resident := v(2) + v(3) + v(4)
	idle := allocated-r.allocated < idleAllocs
	r.allocated = allocated
	if !idle || resident < live+idleSurplus {
		return false
	}
	debug.FreeOSMemory()
	r.read()
	r.allocated = v(0) // the collection's own allocations are not activity
	return true
}
