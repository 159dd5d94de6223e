//go:build pprof

// This file is only in a binary built with -tags pprof, as bench/run.sh
// --pprof builds one: the product has no profiling endpoint and no
// profiling signal. With RELAYQ_PPROF_DIR set, SIGUSR1 starts a CPU
// profile and takes a first allocation profile; SIGUSR2 stops the CPU
// profile and takes the second allocation profile. Both go to that
// directory as cpu.pprof, allocs-start.pprof and allocs-end.pprof, so that
// `go tool pprof -diff_base allocs-start.pprof allocs-end.pprof` shows what
// was allocated between the signals alone. With RELAYQ_PPROF_TRACE set to
// a duration, SIGUSR1 also takes an execution trace of that long, from
// traceDelay on, as trace.out (off-CPU time: go tool trace -pprof=sched).

package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"
)

func init() {
	dir := os.Getenv("RELAYQ_PPROF_DIR")
	if dir == "" {
		return
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	profilingSignals = true // serve.go
	go func() {
		var cpu *os.File
		for s := range sig {
			switch {
			case s == syscall.SIGUSR1 && cpu == nil:
				f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
				if err == nil {
					err = pprof.StartCPUProfile(f)
				}
				if err != nil {
					fmt.Fprintf(os.Stderr, "relayq: pprof: starting the CPU profile: %v\n", err)
					continue
				}
				cpu = f
				startTrace(dir)
				writeProfile(dir, "allocs", "allocs-start.pprof")
				writeMemory(dir, "memory-start.txt")
			case s == syscall.SIGUSR2 && cpu != nil:
				pprof.StopCPUProfile()
				cpu.Close()
				cpu = nil
				writeProfile(dir, "allocs", "allocs-end.pprof")
				writeMemory(dir, "memory-end.txt")
			case s == syscall.SIGUSR2:
				// Without a CPU profile running: a snapshot of the heap
				// (inuse_space after a collection) and of where the
				// process's memory is, at any time, e.g. after a drain.
				runtime.GC()
				writeProfile(dir, "heap", "heap.pprof")
				writeMemory(dir, "memory.txt")
			}
		}
	}()
}

// writeProfile writes the named runtime profile to dir/file.
func writeProfile(dir, name, file string) {
	f, err := os.Create(filepath.Join(dir, file))
	if err == nil {
		err = pprof.Lookup(name).WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "relayq: pprof: writing %s: %v\n", file, err)
	}
}

// writeMemory writes the runtime's memory classes (live heap, heap freed
// but not yet returned to the OS, released heap, stacks, runtime
// metadata) to dir/file, one "name bytes" line each: what separates a
// heap that is still live from one the runtime has not given back yet.
func writeMemory(dir, file string) {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") || strings.HasPrefix(d.Name, "/gc/heap/") && d.Kind == metrics.KindUint64 {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	var b strings.Builder
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			fmt.Fprintf(&b, "%-50s %12d\n", s.Name, s.Value.Uint64())
		}
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(b.String()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "relayq: pprof: writing %s: %v\n", file, err)
	}
}

// startTrace, with RELAYQ_PPROF_TRACE set to a duration (e.g. 2s), writes
// an execution trace of that long to dir/trace.out, from traceDelay on:
// the load is running by then.
func startTrace(dir string) {
	d, err := time.ParseDuration(os.Getenv("RELAYQ_PPROF_TRACE"))
	if err != nil || d <= 0 {
		return
	}
	time.AfterFunc(traceDelay, func() { traceFor(dir, d) })
}

// traceDelay is how long after SIGUSR1 the trace starts: bench/run.sh
// signals before the load starts.
const traceDelay = 2 * time.Second

// traceFor writes an execution trace of d to dir/trace.out.
func traceFor(dir string, d time.Duration) {
	f, err := os.Create(filepath.Join(dir, "trace.out"))
	if err == nil {
		err = trace.Start(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "relayq: pprof: starting the trace: %v\n", err)
		return
	}
	time.AfterFunc(d, func() {
		trace.Stop()
		f.Close()
	})
}
