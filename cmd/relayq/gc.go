package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
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
