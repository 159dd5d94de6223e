// Command backlog measures what an operator's commands cost with a deep
// queue: it fills a queue file directly through the queue package (-n
// messages of 2 KB, -dead of them dead-lettered), starts `relayq serve` on
// it with a relay that accepts connections and never answers (so the
// backlog stays put while it measures), and prints:
//
//	open          queue.Open of the filled file, in this process (with
//	              -rebuild: of the file without its counters, which that
//	              open builds, once)
//	first answer  exec of relayq serve to the first 220 greeting on its
//	              submission socket (dialled every millisecond from exec),
//	              and its reply to MAIL (250: until ready, intake takes
//	              mail into the maildrop, spool/starting.go)
//	ready         exec of relayq serve to its "relayq ready" log line
//	              (with -cold: both after the queue file's pages were
//	              dropped from the page cache, posix_fadvise DONTNEED)
//	delivery      exec to the end of the walk of the file's pages after
//	              an Open that read the freelist saved at Close
//	              (queue/pagewalk.go): delivery starts then
//	status        `relayq status --json`, whole call
//	queue list    `relayq queue list` (first page: 1000), whole call
//	mailq         `relayq mailq` (first page), whole call
//	dead list     `relayq dead list` (first page), whole call
//	queue list --json --limit 1000, and --rcpt on a recipient near the end
//	RSS           the daemon's VmRSS / RssAnon before and after the calls
//	flush         `relayq flush` (with -flush), once, after the others: it
//	              makes every message due, so a kept file has nothing
//	              left to move at the next run; then the RSS again
//	crash         with -crash: relayq serve (ready, as above) is killed
//	              with SIGKILL and started again on the same file (with
//	              -cold, after dropping its pages again): a file left by
//	              a crash has no saved freelist, so Open reads the file
//	              through first. Prints the first answer, when a local
//	              program's `relayq sendmail` first exits 0, when a
//	              message over the socket first gets its 250 (while the
//	              queue is not open intake writes both into the maildrop
//	              before the 250 or exit 0), ready, and when the
//	              maildrop was empty again (both imported into the queue).
//	drain         with -drain IDLE: relayq serve restarted with a relay that
//	              accepts everything, until the queue is empty (rate,
//	              RssAnon at start, peak, when empty), then IDLE of quiet
//	              (RssAnon after it): memory back to baseline after a
//	              drain; the baseline is relayq serve's RssAnon on a new,
//	              empty queue after min(IDLE, 1m) idle. A kept file is
//	              empty afterwards.
//
// Each call is run -runs times; the median is printed. Run it by hand:
//
//	go run ./bench/backlog -n 100000
//
// It is not part of CI. The file and the daemon's state go in a temporary
// directory, removed at the end unless -keep.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"relayq/queue"
)

func main() {
	n := flag.Int("n", 100000, "messages to queue")
	dead := flag.Int("dead", 1000, "of them, how many to dead-letter")
	runs := flag.Int("runs", 5, "times each command is run (the median is printed)")
	bin := flag.String("relayq", "", "relayq binary (default: go build ./cmd/relayq into the temporary directory)")
	dir := flag.String("dir", "", "directory for the queue and the daemon's state (default: a new temporary one)")
	keep := flag.Bool("keep", false, "keep the directory (and reuse a filled queue file in -dir)")
	settle := flag.Duration("settle", 2*time.Second, "wait after ready before the calls (the damage audit after start reads every record once)")
	deferred := flag.Bool("deferred", false, "when filling, defer every message by an hour (one attempt each), as after an outage:\nwhat relayq flush has to move")
	flush := flag.Bool("flush", false, "end with one `relayq flush` (it makes every message of the file due)")
	cold := flag.Bool("cold", false, "drop the queue file's pages from the page cache before starting relayq serve")
	rebuild := flag.Bool("rebuild", false, "drop the counters from the file first, so that the open measured builds them,\nas the first open of a file written by a relayq before them does")
	crash := flag.Bool("crash", false, "kill -9 relayq serve once ready and time its start again on the same file\n(what a local program and an SMTP client see while it recovers)")
	drainIdle := flag.Duration("drain", 0, "end by delivering the whole queue to a relay that accepts everything (the file is empty\nafterwards), then watching the idle daemon this long; prints RssAnon at start, peak, empty, after")
	flag.Parse()

	if *dir == "" {
		d, err := os.MkdirTemp("", "rqbacklog")
		if err != nil {
			log.Fatal(err)
		}
		*dir = d
	}
	if !*keep {
		defer os.RemoveAll(*dir)
	}
	if *bin == "" {
		*bin = filepath.Join(*dir, "relayq")
		if out, err := exec.Command("go", "build", "-o", *bin, "./cmd/relayq").CombinedOutput(); err != nil {
			log.Fatalf("go build: %v\n%s", err, out)
		}
	}
	path := filepath.Join(*dir, "queue.db")
	if _, err := os.Stat(path); err != nil {
		start := time.Now()
		if err := fill(path, *n, *dead, *deferred); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("filled %d messages (%d dead letters) in %v\n", *n, *dead, time.Since(start).Round(time.Second))
	}
	if fi, err := os.Stat(path); err == nil {
		fmt.Printf("queue file       %d MiB\n", fi.Size()>>20)
	}
	if *rebuild {
		if err := dropCounters(path); err != nil {
			log.Fatal(err)
		}
	}
	start := time.Now()
	q, err := queue.Open(path, queue.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("open             %v\n", time.Since(start).Round(time.Millisecond))
	q.Close()

	relay := blackhole()
	cfg := writeConfig(*dir, relay)
	if *cold {
		if err := dropCache(path); err != nil {
			log.Fatal(err)
		}
	}
	d := startDaemon(*bin, cfg, filepath.Join(*dir, "submit.sock"))
	defer d.stop()
	fmt.Printf("first answer     %v (%s)\n", d.firstAnswer.Round(time.Millisecond), d.firstReply)
	fmt.Printf("ready            %v\n", d.ready.Round(time.Millisecond))
	if w := d.waitWalked(30 * time.Second); w > 0 {
		fmt.Printf("delivery starts  %v (the file's pages read through after start)\n", w.Round(time.Millisecond))
	}
	if *crash {
		d = restartAfterKill(d, *bin, cfg, path, filepath.Join(*dir, "submit.sock"), filepath.Join(*dir, "maildrop"), *cold) // crash.go
		defer d.stop()
	}
	time.Sleep(*settle)
	before := memory(d.cmd.Process.Pid)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"status", []string{"status", "--json"}},
		{"queue list", []string{"queue", "list"}},
		{"mailq", []string{"mailq"}},
		{"dead list", []string{"dead", "list"}},
		{"list --json", []string{"queue", "list", "--json", "--limit", "1000"}},
		{"list --rcpt", []string{"queue", "list", "--rcpt", fmt.Sprintf("rcpt%d@", *n-10)}},
	} {
		var took []time.Duration
		var out []byte
		for range *runs {
			start := time.Now()
			cmd := exec.Command(*bin, append(c.args, "-c", cfg)...)
			out, err = cmd.Output()
			took = append(took, time.Since(start))
			if err != nil && !strings.Contains(err.Error(), "exit status 1") { // status exits 1 when unhealthy
				fmt.Printf("%-16s failed: %v\n", c.name, err) // an older relayq may not know the flags
			}
		}
		slices.Sort(took)
		fmt.Printf("%-16s %v (median of %d; %d bytes out)\n", c.name, took[len(took)/2].Round(100*time.Microsecond), *runs, len(out))
	}
	after := memory(d.cmd.Process.Pid)
	fmt.Printf("daemon RSS       %d MiB before the calls (anonymous %d MiB), %d MiB after (anonymous %d MiB)\n",
		before["VmRSS"]>>10, before["RssAnon"]>>10, after["VmRSS"]>>10, after["RssAnon"]>>10)
	if *flush {
		start := time.Now()
		out, err := exec.Command(*bin, "flush", "-c", cfg).CombinedOutput()
		took := time.Since(start)
		if err != nil {
			fmt.Printf("flush            failed: %v\n%s", err, out)
			return
		}
		m := memory(d.cmd.Process.Pid)
		fmt.Printf("flush            %v (%s); daemon RSS after %d MiB (anonymous %d MiB, peak %d MiB)\n",
			took.Round(time.Millisecond), lastLine(out), m["VmRSS"]>>10, m["RssAnon"]>>10, m["VmHWM"]>>10)
	}
	if *drainIdle > 0 {
		d.stop()
		drain(*bin, *dir, *drainIdle) // drain.go
	}
}

// fill queues n messages of 2 KB and dead-letters dead of them; with
// deferred, the others have had an attempt and are due in an hour.
func fill(path string, n, dead int, deferred bool) error {
	q, err := queue.Open(path, queue.Options{MaxBatch: 2000})
	if err != nil {
		return err
	}
	defer q.Close()
	body := bytes.Repeat([]byte(strings.Repeat("x", 78)+"\r\n"), 2048/80)
	work := make(chan int, 1000)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 500 {
		wg.Go(func() {
			for i := range work {
				env := queue.Envelope{From: "backlog@example.org", Recipients: []string{fmt.Sprintf("rcpt%d@example.net", i)}}
				if _, err := q.Put(context.Background(), env, body); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	for left := dead; left > 0; {
		ls, err := q.Lease(min(left, 500))
		if err != nil {
			return err
		}
		for _, l := range ls {
			o := queue.Outcome{Address: l.Recipients[0].Address, Result: queue.Failed,
				Reply: &queue.Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"no such user"}}}
			if _, err := q.Record(l, []queue.Outcome{o}); err != nil {
				return err
			}
		}
		left -= len(ls)
	}
	if deferred {
		return deferAll(q)
	}
	return nil
}

// lastLine is the last line of out (an older relayq's flush printed every
// ID before its count).
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// deferAll records a deferral, due in an hour, for every message due.
func deferAll(q *queue.Queue) error {
	next := time.Now().Add(time.Hour)
	for {
		ls, err := q.Lease(2000)
		if err != nil || len(ls) == 0 {
			return err
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(ls))
		for _, l := range ls {
			wg.Go(func() {
				o := queue.Outcome{Address: l.Recipients[0].Address, Result: queue.Deferred, NextAttempt: next,
					Reply: &queue.Reply{Code: 421, Enhanced: "4.3.0", Lines: []string{"try later"}}}
				if _, err := q.Record(l, []queue.Outcome{o}); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
	}
}

// dropCounters makes path look like a file from before the counters
// (queue/counters.go).
func dropCounters(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"tally", "deferred", "deaths"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("counts"))
	})
}

// blackhole listens on 127.0.0.1 and accepts connections it never
// answers: delivery waits for a greeting, and the backlog stays queued.
func blackhole() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return ln.Addr().String()
}

func writeConfig(dir, relay string) string {
	cfg := filepath.Join(dir, "relayq.toml")
	text := fmt.Sprintf(`state_dir = %q
[relay]
url = "smtp://%s"
greeting_timeout = "10m"
socket_timeout = "10m"
[log]
level = "info"
`, dir, relay)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		log.Fatal(err)
	}
	return cfg
}

type daemon struct {
	cmd         *exec.Cmd
	start       time.Time
	walked      chan time.Duration // exec to the end of the walk after start, if there is one
	ready       time.Duration
	firstAnswer time.Duration // exec to the first greeting on the socket
	firstReply  string        // what that session's MAIL got
}

// startDaemon runs relayq serve and waits for "relayq ready" on its log,
// timing the first answer on the submission socket too.
func startDaemon(bin, cfg, socket string) *daemon {
	cmd := exec.Command(bin, "serve", "-c", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	answered := make(chan struct{})
	d := &daemon{cmd: cmd, start: start, walked: make(chan time.Duration, 1)}
	go func() {
		defer close(answered)
		for time.Since(start) < 5*time.Minute {
			if reply, ok := probe(socket); ok {
				d.firstAnswer, d.firstReply = time.Since(start), reply
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			if strings.Contains(sc.Text(), `msg="relayq ready"`) {
				once()
			}
			if strings.Contains(sc.Text(), "compact") && !strings.Contains(sc.Text(), `msg="relayq starting"`) {
				fmt.Printf("daemon log       %s (%v after start)\n", sc.Text(), time.Since(start).Round(time.Second))
			}
			if strings.Contains(sc.Text(), `msg="queue file read through after start`) {
				d.walked <- time.Since(start)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		log.Fatal("relayq serve not ready after 5 minutes")
	}
	d.ready = time.Since(start)
	<-answered
	return d
}

// probe connects to socket and, if it greets, says EHLO and MAIL and
// returns MAIL's reply.
func probe(socket string) (string, bool) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return "", false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	last := func() string { return lastReplyLine(r) }
	if !strings.HasPrefix(last(), "220") {
		return "", false
	}
	fmt.Fprintf(c, "EHLO probe\r\n")
	last()
	fmt.Fprintf(c, "MAIL FROM:<probe@example.org>\r\n")
	reply := last()
	fmt.Fprintf(c, "QUIT\r\n")
	return "MAIL: " + reply, true
}

// lastReplyLine reads an SMTP reply and returns its last line (its code and
// text), "" when the connection failed first.
func lastReplyLine(r *bufio.Reader) string {
	for {
		line, err := r.ReadString('\n')
		if err != nil || len(line) < 4 || line[3] != '-' {
			return strings.TrimSpace(line)
		}
	}
}

// dropCache drops the file's pages from the page cache (only this file's,
// unlike /proc/sys/vm/drop_caches), as queue/storage_bench_test.go does.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// waitWalked returns when the walk after start ended (exec to its log
// line), 0 when there was none within limit (an Open that walked the file
// first, or a relayq from before the walk after start).
func (d *daemon) waitWalked(limit time.Duration) time.Duration {
	select {
	case w := <-d.walked:
		return w
	case <-time.After(limit):
		return 0
	}
}

func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(os.Interrupt)
	_ = d.cmd.Wait()
}

// memory reads the kB fields of /proc/PID/status.
func memory(pid int) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}
