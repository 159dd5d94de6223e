// Command procmem watches the memory of a daemon and of every process
// descended from it until it is told to stop (SIGTERM or SIGINT), then
// prints one JSON object:
//
//	root_hwm_kb   the root process's own peak RSS (VmHWM), exact
//	peak_rss_kb   the highest sum of VmRSS over the process tree seen in a
//	              sample (Postfix: master and its children, which come and go)
//	peak_pss_kb   the same for PSS, which shares the pages the processes
//	              share (libraries) instead of counting them in each
//	peak_anon_kb  the same for RssAnon: the heap and stacks, without the
//	              mapped files (bbolt's mmap of the queue file, binaries)
//	max_procs     the most processes seen in one sample
//
// Samples are taken every -interval; a multi-process daemon's peak between
// two samples is missed, so the sums are lower bounds.
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

// tree returns root and its descendants, from the parent pids in
// /proc/*/stat.
func tree(root int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		rest := b[bytes.LastIndexByte(b, ')')+1:]
		f := strings.Fields(string(rest))
		if len(f) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
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
	sample := func() {
		var rss, pss, anon int64
		procs := tree(*pid)
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
	for done := false; !done; {
		sample()
		select {
		case <-tick.C:
		case <-stop:
			done = true
		}
	}
	out := map[string]any{"root_hwm_kb": hwm, "peak_rss_kb": peakRSS, "peak_pss_kb": peakPSS, "peak_anon_kb": peakAnon, "max_procs": maxProcs}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		log.Fatal(err)
	}
}
