// Command procmem watches the memory and CPU time of a daemon and of every
// process descended from it until it is told to stop (SIGTERM or SIGINT),
// then prints one JSON object:
//
//	root_hwm_kb   the root process's own peak RSS (VmHWM), exact
//	peak_rss_kb   the highest sum of VmRSS over the process tree seen in a
//	              sample (Postfix: master and its children, which come and go)
//	peak_pss_kb   the same for PSS, which shares the pages the processes
//	              share (libraries) instead of counting them in each
//	peak_anon_kb  the same for RssAnon: the heap and stacks, without the
//	              mapped files (bbolt's mmap of the queue file, binaries)
//	max_procs     the most processes seen in one sample
//	cpu_ms        CPU time (user + system) the tree used while watched: each
//	              process's growth since it was first seen (from 0 for one
//	              born meanwhile), plus what the root's reaped children used
//
// Samples are taken every -interval; a multi-process daemon's peak between
// two samples is missed, so the sums are lower bounds, and so is cpu_ms when
// a child is born and reaped between two samples by a process other than
// the root.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// field reads a "Name:   N kB" field of /proc/PID/status (or of
// smaps_rollup), in kB; 0 when the process is gone.
func field(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n
	}
	return 0
}

// stat is what procmem reads of /proc/PID/stat.
type stat struct {
	ppid      int
	cpu       int64 // utime + stime, in clock ticks
	reapedCPU int64 // cutime + cstime: children this process has waited for
}

// msPerTick converts /proc's clock ticks (USER_HZ, 100 on Linux) to ms.
const msPerTick = 10

// readStats reads /proc/*/stat: every process, by pid.
func readStats() map[int]stat {
	out := map[int]stat{}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid … utime stime cutime cstime …; comm may
		// hold spaces and parentheses. Counting from state as 0, ppid is
		// field 1 and utime field 11.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 15 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		var n [5]int64
		for i, k := range []int{1, 11, 12, 13, 14} {
			n[i], _ = strconv.ParseInt(f[k], 10, 64)
		}
		out[pid] = stat{ppid: int(n[0]), cpu: n[1] + n[2], reapedCPU: n[3] + n[4]}
	}
	return out
}

// tree returns root and its descendants among stats.
func tree(root int, stats map[int]stat) []int {
	children := map[int][]int{}
	for pid, st := range stats {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func main() {
	pid := flag.Int("pid", 0, "root process")
	pidFile := flag.String("pidfile", "", "file holding the root process's pid (read at start)")
	interval := flag.Duration("interval", 200*time.Millisecond, "sampling interval")
	flag.Parse()
	log.SetPrefix("procmem: ")
	if *pidFile != "" {
		b, err := os.ReadFile(*pidFile)
		if err != nil {
			log.Fatal(err)
		}
		if *pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			log.Fatalf("%s: %v", *pidFile, err)
		}
	}
	if *pid <= 0 {
		log.Fatal("give -pid or -pidfile")
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	var peakRSS, peakPSS, peakAnon, hwm int64
	maxProcs := 0
	// CPU: the first and the latest value of each process seen in the tree.
	firstCPU, lastCPU := map[int]int64{}, map[int]int64{}
	parent, alive := map[int]int{}, map[int]bool{}
	var rootReaped0, rootReaped int64
	samples := 0
	sample := func() {
		var rss, pss, anon int64
		stats := readStats()
		procs := tree(*pid, stats)
		for _, p := range procs {
			st, ok := stats[p]
			if !ok {
				continue
			}
			if _, seen := firstCPU[p]; !seen {
				firstCPU[p] = 0 // born while watched: all of its CPU counts
				if samples == 0 {
					firstCPU[p] = st.cpu
				}
			}
			lastCPU[p], parent[p] = st.cpu, st.ppid
		}
		clear(alive)
		for _, p := range procs {
			alive[p] = true
		}
		if st, ok := stats[*pid]; ok {
			if samples == 0 {
				rootReaped0 = st.reapedCPU
			}
			rootReaped = st.reapedCPU
		}
		samples++
		for _, p := range procs {
			dir := "/proc/" + strconv.Itoa(p)
			rss += field(dir+"/status", "VmRSS")
			anon += field(dir+"/status", "RssAnon")
			pss += field(dir+"/smaps_rollup", "Pss")
		}
		peakRSS, peakPSS, peakAnon = max(peakRSS, rss), max(peakPSS, pss), max(peakAnon, anon)
		maxProcs = max(maxProcs, len(procs))
		hwm = max(hwm, field("/proc/"+strconv.Itoa(*pid)+"/status", "VmHWM"))
	}
	sample()
	for done := false; !done; {
		select {
		case <-tick.C:
		case <-stop:
			done = true
		}
		sample() // once more at the stop, for the CPU time up to it
	}
	// A child the root reaped is in rootReaped whole; one still running,
	// or reaped by another process of the tree, counts as last seen.
	cpu := rootReaped - rootReaped0
	for p, last := range lastCPU {
		if !alive[p] && parent[p] == *pid {
			cpu -= firstCPU[p]
			continue
		}
		cpu += last - firstCPU[p]
	}
	out := map[string]any{"root_hwm_kb": hwm, "peak_rss_kb": peakRSS, "peak_pss_kb": peakPSS, "peak_anon_kb": peakAnon, "max_procs": maxProcs, "cpu_ms": cpu * msPerTick}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		log.Fatal(err)
	}
}
