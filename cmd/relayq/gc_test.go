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
