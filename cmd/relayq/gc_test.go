package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func currentGCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// waitGCPercent collects until the tuner's setting satisfies ok, or fails.
func waitGCPercent(t *testing.T, want string, ok func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(currentGCPercent()) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d, want %s", currentGCPercent(), want)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

var gcTestHeap [][]byte

// The collector's setting follows the live heap: a small heap may grow by
// more than the default 100%, a large one by the default, and back again.
func TestTuneGCFollowsLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC") // restored by Setenv's cleanup
	before := currentGCPercent()
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel() // the tuner stops at the next collection
		gcTestHeap = nil
		runtime.GC()
		debug.SetGCPercent(before)
	}()

	// The test binary's own heap (other tests' leftovers included) is
	// small, but not known exactly: above the default is what matters.
	above := func(p int) bool { return p > 100 && p <= gcMaxPercent }
	tuneGC(ctx)
	waitGCPercent(t, "above 100 for a small heap", above)

	for range 64 { // 64 MiB live: well past gcHeadroom
		gcTestHeap = append(gcTestHeap, make([]byte, 1<<20))
	}
	waitGCPercent(t, "100 for a large heap", func(p int) bool { return p == 100 })

	gcTestHeap = nil
	waitGCPercent(t, "above 100 again once the heap is small", above)
}

// An operator's GOGC stands.
func TestTuneGCLeavesOperatorsGOGC(t *testing.T) {
	t.Setenv("GOGC", "150")
	before := currentGCPercent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tuneGC(ctx)
	runtime.GC()
	if got := currentGCPercent(); got != before {
		t.Fatalf("GOGC changed from %d to %d though the environment sets it", before, got)
	}
}

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcMaxPercent},
		{1 << 20, gcMaxPercent}, // 16 MiB headroom would be 1600%
		{8 << 20, 200},          // exactly the headroom
		{10 << 20, 150},         // 160% in steps of 25
		{gcHeadroom, 100},       // the default from here on
		{1 << 30, 100},          // never below it
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// heapSurplus is the resident heap beyond the live heap, as idleReleaser
// sees it.
func heapSurplus(t *testing.T) uint64 {
	t.Helper()
	r := newIdleReleaser()
	if !r.read() {
		t.Fatal("the runtime lacks a metric idleReleaser reads")
	}
	v := func(i int) uint64 { return r.sample[i].Value.Uint64() }
	resident, live := v(2)+v(3)+v(4), v(1)
	if resident < live {
		return 0
	}
	return resident - live
}

// After a burst, an idle daemon hands the heap it no longer uses back to
// the system at the next check, and only once: a busy one keeps it.
func TestIdleReleaserReturnsHeapAfterBurst(t *testing.T) {
	before := debug.SetGCPercent(-1) // no collection between the burst and the checks
	defer debug.SetGCPercent(before)
	r := newIdleReleaser()
	for range 64 { // the burst: 64 MiB of garbage
		gcTestHeap = append(gcTestHeap, make([]byte, 1<<20))
	}
	gcTestHeap = nil
	if r.check() {
		t.Fatal("released while allocating")
	}
	if s := heapSurplus(t); s < 48<<20 {
		t.Fatalf("surplus after the burst is %d MiB, want the burst's 64 MiB resident", s>>20)
	}
	if !r.check() {
		t.Fatal("idle with 64 MiB of garbage resident, but nothing released")
	}
	if s := heapSurplus(t); s >= idleSurplus {
		t.Fatalf("surplus after the release is %d MiB, want under %d MiB", s>>20, idleSurplus>>20)
	}
	if r.check() {
		t.Fatal("released again with nothing to give back")
	}
}
