// Command report turns the measurements bench/run.sh collected (one JSON
// object a line: which system, which kind of run, and what load, sink,
// procmem, strace and fsyncrate said) into the benchmark's Markdown tables:
// one row per system with the median of its runs, the ceilings, and the
// ratios against the targets of issue 6.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"slices"
	"strings"
)

// record is one line of the harness's raw output.
type record struct {
	System string `json:"system"` // relayq, postfix, ceiling, disk
	Kind   string `json:"kind"`   // smtp, half, sendmail1, sendmail8, fsync, disk
	Run    int    `json:"run"`
	Load   *struct {
		N       int     `json:"n"`
		Acked   int     `json:"acked"`
		Failed  int     `json:"failed"`
		FirstEr string  `json:"first_error"`
		StartNS int64   `json:"start_ns"`
		Rate    float64 `json:"rate"`
		P50     float64 `json:"p50_ms"`
		P99     float64 `json:"p99_ms"`
		CPUms   int64   `json:"cpu_ms"`
	} `json:"load"`
	Sink *struct {
		Total    int64 `json:"total"`
		Distinct int64 `json:"distinct"`
		LastNS   int64 `json:"last_ns"`
		Complete bool  `json:"complete"`
	} `json:"sink"`
	Mem *struct {
		RootHWM int64 `json:"root_hwm_kb"`
		PeakRSS int64 `json:"peak_rss_kb"`
		PeakPSS int64 `json:"peak_pss_kb"`
		Anon    int64 `json:"peak_anon_kb"`
		CPUms   int64 `json:"cpu_ms"`
	} `json:"mem"` // the daemon's process tree
	SinkMem *struct {
		CPUms int64 `json:"cpu_ms"`
	} `json:"sinkmem"`
	Fsync *struct {
		Calls    int64 `json:"calls"`
		Messages int64 `json:"messages"`
	} `json:"fsync"`
	Disk *struct {
		Writers int     `json:"writers"`
		Rate    float64 `json:"rate"`
	} `json:"disk"`
}

// runs holds the records of one system.
type runs []record

func (rs runs) kind(k string) runs {
	var out runs
	for _, r := range rs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// median of f over the records for which f reports a value; ok is false
// when none does.
func (rs runs) median(f func(record) (float64, bool)) (float64, bool) {
	var vs []float64
	for _, r := range rs {
		if v, ok := f(r); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

func loadRate(r record) (float64, bool) { return r.Load.Rate, r.Load != nil && r.Load.Acked > 0 }
func p50(r record) (float64, bool)      { return r.Load.P50, r.Load != nil && r.Load.Acked > 0 }
func p99(r record) (float64, bool)      { return r.Load.P99, r.Load != nil && r.Load.Acked > 0 }

// e2e is messages per second from the first submission to the sink's last
// arrival, for a run whose every acknowledged message arrived.
func e2e(r record) (float64, bool) {
	if r.Load == nil || r.Sink == nil || !r.Sink.Complete || r.Sink.LastNS <= r.Load.StartNS {
		return 0, false
	}
	return float64(r.Sink.Distinct) / (float64(r.Sink.LastNS-r.Load.StartNS) / 1e9), true
}

// memory kinds for mem
const (
	peakRSS = iota // relayq's VmHWM; Postfix's summed VmRSS
	peakPSS
	peakAnon // RssAnon: without mapped files
)

func mem(kind int) func(record) (float64, bool) {
	return func(r record) (float64, bool) {
		if r.Mem == nil {
			return 0, false
		}
		kb := max(r.Mem.RootHWM, r.Mem.PeakRSS)
		switch kind {
		case peakPSS:
			kb = r.Mem.PeakPSS
		case peakAnon:
			kb = r.Mem.Anon
		}
		return float64(kb) / 1024, kb > 0
	}
}

// CPU time per acknowledged message, in µs, of one party to an SMTP run.
const (
	cpuDaemon = iota // the MTA's processes
	cpuLoad          // the load generator
	cpuSink          // the sink
	cpuAll           // all three: what a message costs the machine
)

func cpu(who int) func(record) (float64, bool) {
	return func(r record) (float64, bool) {
		if r.Load == nil || r.Load.Acked == 0 {
			return 0, false
		}
		var ms int64
		ok := true
		if who == cpuDaemon || who == cpuAll {
			if r.System == "ceiling" {
				ok = ok && who == cpuAll // no daemon: nothing to add
			} else {
				ok = ok && r.Mem != nil && r.Mem.CPUms > 0
				if r.Mem != nil {
					ms += r.Mem.CPUms
				}
			}
		}
		if who == cpuLoad || who == cpuAll {
			ok = ok && r.Load.CPUms > 0
			ms += r.Load.CPUms
		}
		if who == cpuSink || who == cpuAll {
			ok = ok && r.SinkMem != nil && r.SinkMem.CPUms > 0
			if r.SinkMem != nil {
				ms += r.SinkMem.CPUms
			}
		}
		return float64(ms) * 1000 / float64(r.Load.Acked), ok
	}
}

func fsyncs(r record) (float64, bool) {
	if r.Fsync == nil || r.Fsync.Messages == 0 {
		return 0, false
	}
	return float64(r.Fsync.Calls) / float64(r.Fsync.Messages), true
}

// lost counts acknowledged messages the sink never received, over every
// run that checked; dup counts extra copies; checked is how many runs did.
func (rs runs) lost() (lost, dup int64, checked int) {
	for _, r := range rs {
		if r.Load == nil || r.Sink == nil {
			continue
		}
		checked++
		lost += max(0, int64(r.Load.Acked)-r.Sink.Distinct)
		dup += r.Sink.Total - r.Sink.Distinct
	}
	return lost, dup, checked
}

func f0(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.0f", v)
}

func f1(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

func f2(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

var names = map[string]string{
	"relayq":  "relayq",
	"postfix": "Postfix null client",
	"ceiling": "ceiling: load → sink, no MTA",
}

func systemRow(w io.Writer, name string, rs runs) {
	smtp := rs.kind("smtp")
	lost, dup, checked := rs.lost()
	lostCell := "—"
	if checked > 0 {
		lostCell = fmt.Sprintf("%d", lost)
		if dup > 0 {
			lostCell += fmt.Sprintf(" (%d dup)", dup)
		}
	}
	sm1 := rs.kind("sendmail1")
	p50s, ok50 := sm1.median(p50)
	sendmail1 := f0(sm1.median(loadRate))
	if ok50 {
		sendmail1 += fmt.Sprintf(" (p50 %.1f ms)", p50s)
	}
	lat := f2(smtp.median(p50)) + " / " + f2(smtp.median(p99))
	rss := f1(smtp.median(mem(peakRSS)))
	if anon, ok := smtp.median(mem(peakAnon)); ok {
		rss += fmt.Sprintf(" (anon %.1f)", anon)
	}
	half := f2(rs.kind("half").median(p99))
	if r, ok := rs.kind("half").median(loadRate); ok {
		half += fmt.Sprintf(" @ %.0f/s", r)
	}
	cpuCell := f0(smtp.median(cpu(cpuDaemon))) + " + " + f0(smtp.median(cpu(cpuLoad))) + " + " + f0(smtp.median(cpu(cpuSink)))
	fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name,
		f0(smtp.median(loadRate)), f0(smtp.median(e2e)), lat, half,
		sendmail1, f0(rs.kind("sendmail8").median(loadRate)),
		rss, f1(smtp.median(mem(peakPSS))), cpuCell,
		f2(rs.kind("fsync").median(fsyncs)), lostCell)
}

// target is one line of the ratios table.
type target struct {
	what, value, goal string
	met               string // ✓, ✗ or —
}

func check(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

func ratio(a, b float64, okA, okB bool) (float64, bool) {
	if !okA || !okB || b == 0 {
		return 0, false
	}
	return a / b, true
}

func targets(by map[string]runs, cores int) []target {
	rq, pf, ce := by["relayq"], by["postfix"], by["ceiling"]
	var out []target
	add := func(what string, v float64, ok bool, format, goal string, met func(float64) bool) {
		t := target{what: what, value: "—", goal: goal, met: "—"}
		if ok {
			t.value = fmt.Sprintf(format, v)
			if met != nil {
				t.met = check(met(v))
			}
		}
		out = append(out, t)
	}
	at := func(rs runs, k string, f func(record) (float64, bool)) (float64, bool) { return rs.kind(k).median(f) }
	rqE, ok1 := at(rq, "smtp", e2e)
	pfE, ok2 := at(pf, "smtp", e2e)
	ceE, ok3 := at(ce, "smtp", e2e)
	v, ok := ratio(rqE, pfE, ok1, ok2)
	add("end to end, relayq / Postfix", v, ok, "%.2f×", "≥ 3×", func(v float64) bool { return v >= 3 })
	v, ok = ratio(rqE, ceE, ok1, ok3)
	add("end to end, relayq / ceiling", v*100, ok, "%.0f%%", "≥ 60%", func(v float64) bool { return v >= 60 })
	// What the CPU allows: each message costs the machine relayq's, the
	// load's and the sink's CPU time; the ceiling costs only the last two.
	rqCPU, okR := at(rq, "smtp", cpu(cpuDaemon))
	ceCPU, okC := at(ce, "smtp", cpu(cpuAll))
	v, ok = ratio(rqCPU, ceCPU, okR, okC)
	add("CPU per message, relayq / (load + sink in the ceiling run)", v, ok, "%.2f×", "—", nil)
	allCPU, okA := at(rq, "smtp", cpu(cpuAll))
	v, ok = ratio(float64(cores)*1e6/allCPU, ceE, okA && allCPU > 0, ok3)
	add(fmt.Sprintf("end to end the %d cores allow at relayq's measured CPU per message (relayq + load + sink), / ceiling", cores),
		v*100, ok, "%.0f%%", "—", nil)
	a, okA := at(rq, "smtp", loadRate)
	b, okB := at(pf, "smtp", loadRate)
	v, ok = ratio(a, b, okA, okB)
	add("SMTP acceptance, relayq / Postfix", v, ok, "%.2f×", "—", nil)
	a, okA = at(rq, "sendmail1", loadRate)
	b, okB = at(pf, "sendmail1", loadRate)
	v, ok = ratio(a, b, okA, okB)
	add("sendmail ×1, relayq / Postfix", v, ok, "%.2f×", "≥ 5×", func(v float64) bool { return v >= 5 })
	a, okA = at(rq, "sendmail8", loadRate)
	b, okB = at(pf, "sendmail8", loadRate)
	v, ok = ratio(a, b, okA, okB)
	add("sendmail ×8, relayq / Postfix", v, ok, "%.2f×", "—", nil)
	v, ok = at(rq, "half", p99)
	add("relayq acceptance p99 at half its peak rate", v, ok, "%.2f ms", "≤ 5 ms", func(v float64) bool { return v <= 5 })
	v, ok = at(rq, "smtp", mem(peakRSS))
	add("relayq peak RSS during the SMTP runs", v, ok, "%.1f MiB", "≤ 64 MiB", func(v float64) bool { return v <= 64 })
	v, ok = at(rq, "smtp", mem(peakAnon))
	add("relayq peak RSS during the SMTP runs, without mapped files (RssAnon)", v, ok, "%.1f MiB", "—", nil)
	var lost int64
	checked := 0
	for _, rs := range by {
		l, _, c := rs.lost()
		lost, checked = lost+l, checked+c
	}
	add(fmt.Sprintf("messages lost (acknowledged, never at the sink), %d runs checked", checked),
		float64(lost), checked > 0, "%.0f", "0", func(v float64) bool { return v == 0 })
	return out
}

func main() {
	machine := flag.String("machine", "", "one line describing the machine")
	cores := flag.Int("cores", runtime.NumCPU(), "the machine's cores, for what its CPU allows")
	flag.Parse()
	log.SetPrefix("report: ")
	by := map[string]runs{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			log.Fatalf("%v in %s", err, sc.Text())
		}
		by[r.System] = append(by[r.System], r)
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	write(os.Stdout, *machine, *cores, by)
}

func write(w io.Writer, machine string, cores int, by map[string]runs) {
	fmt.Fprintln(w, "## relayq vs Postfix: benchmark results")
	fmt.Fprintln(w)
	if machine != "" {
		fmt.Fprintf(w, "Machine: %s\n\n", machine)
	}
	smtpRuns, n := 0, 0
	for _, r := range by["relayq"].kind("smtp") {
		smtpRuns, n = smtpRuns+1, r.Load.N
	}
	fmt.Fprintf(w, "Medians of %d run(s) of each configuration; SMTP load: %d messages of 5 KB over 10 sessions of up to 100 messages each.\n\n", smtpRuns, n)
	fmt.Fprintln(w, "| system | SMTP acceptance (msg/s) | end to end (msg/s) | acceptance p50 / p99 (ms) | p99 at half peak (ms) | `sendmail` ×1 (/s) | `sendmail` ×8 (/s) | peak RSS (MiB) | peak PSS (MiB) | CPU µs/msg: MTA + load + sink | fsyncs/msg | lost |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range []string{"relayq", "postfix", "ceiling"} {
		if rs, ok := by[s]; ok {
			systemRow(w, names[s], rs)
		}
	}
	if disk := by["disk"]; len(disk) > 0 {
		var cells []string
		for _, wr := range []int{1, 8} {
			v, ok := disk.median(func(r record) (float64, bool) {
				return r.Disk.Rate, r.Disk != nil && r.Disk.Writers == wr
			})
			cells = append(cells, fmt.Sprintf("%d writer(s): %s/s", wr, f0(v, ok)))
		}
		fmt.Fprintf(w, "| ceiling: disk, create+write+fsync+dir fsync | %s | — | — | — | — | — | — | — | — | 2 | — |\n", strings.Join(cells, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| ratio / target | measured | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, t := range targets(by, cores) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.what, t.value, t.goal, t.met)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Acceptance: messages acknowledged (250 after the final dot) per second, from the first MAIL to the last 250. "+
		"End to end: from the first MAIL until the sink has every acknowledged message. "+
		"Peak RSS: relayq's VmHWM; for Postfix the largest sum of VmRSS over master and its children in 200 ms samples (PSS shares the libraries); "+
		"anon: the peak of RssAnon, without mapped files (relayq maps its bbolt queue file, whose pages count in RSS). "+
		"CPU µs/msg: user + system time of the MTA's processes, of the load generator and of the sink during the SMTP runs, per message acknowledged. "+
		"fsyncs/msg: fsync+fdatasync calls of the daemon (all processes) under strace in a separate pass, per message delivered.")
}
