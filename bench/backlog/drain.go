package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// drain restarts relayq serve on the file with a relay that accepts every
// message (an in-process go-smtp server that discards them), waits until
// the queue is empty, then watches the daemon for idle, and prints its
// RssAnon along the way: what issue 15 asks is flat while delivering and
// back to baseline after the drain; and, as that baseline, the RssAnon of
// relayq serve idle on a new, empty queue. The file is empty afterwards.
func drain(bin, dir string, idle time.Duration) {
	relay, delivered := discardRelay()
	cfg := writeConfig(dir, relay)
	d := startDaemon(bin, cfg, filepath.Join(dir, "submit.sock"))
	defer d.stop()
	pid := d.cmd.Process.Pid
	start := time.Now()
	atStart := memory(pid)["RssAnon"]
	peak := atStart
	for {
		time.Sleep(time.Second)
		peak = max(peak, memory(pid)["RssAnon"])
		n, err := queued(bin, cfg)
		if err != nil {
			fmt.Printf("drain            status failed: %v\n", err)
			return
		}
		if n == 0 {
			break
		}
	}
	took := time.Since(start)
	end := memory(pid)["RssAnon"]
	fmt.Printf("drain            %d messages in %v (%.0f/s); RssAnon %d MiB at start, peak %d MiB, %d MiB when empty\n",
		delivered.Load(), took.Round(time.Second), float64(delivered.Load())/took.Seconds(), atStart>>10, peak>>10, end>>10)
	if idle <= 0 {
		return
	}
	// Sampled every 100 ms: the daemon compacts the drained file in this
	// time ([queue] compact_free), and its peak is part of "flat".
	lowest, last, idlePeak := end, end, end
	for waited := time.Duration(0); waited < idle; waited += 100 * time.Millisecond {
		time.Sleep(100 * time.Millisecond)
		last = memory(pid)["RssAnon"]
		lowest, idlePeak = min(lowest, last), max(idlePeak, last)
	}
	fmt.Printf("idle             RssAnon %d MiB after %v idle (lowest %d MiB, peak %d MiB)\n", last>>10, idle, lowest>>10, idlePeak>>10)
	if os.Getenv("RELAYQ_PPROF_DIR") != "" {
		// A binary built with -tags pprof writes heap.pprof and
		// memory.txt there (cmd/relayq/pprof.go).
		_ = d.cmd.Process.Signal(syscall.SIGUSR2)
		time.Sleep(2 * time.Second)
	}
	// The file after the idle time: the daemon compacts it once it has
	// been quiet ([queue] compact_free), and gives free pages' blocks back.
	if fi, err := os.Stat(filepath.Join(dir, "queue.db")); err == nil {
		blocks := int64(0)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			blocks = st.Blocks * 512
		}
		fmt.Printf("file             queue.db %d MiB long, %d MiB on disk after %v idle\n", fi.Size()>>20, blocks>>20, idle)
	}
	d.stop()
	wait := min(idle, time.Minute)
	fmt.Printf("baseline         RssAnon %d MiB after %v idle on a new, empty queue\n", baseline(bin, wait)>>10, wait)
}

// baseline runs relayq serve on a new, empty queue file in a directory of
// its own, idle for idle, and returns its RssAnon then: the memory a
// drained daemon should come back to. (The RssAnon at start above is the
// daemon's on the full file before its heap has grown, lower still.)
func baseline(bin string, idle time.Duration) int64 {
	dir, err := os.MkdirTemp("", "relayq-baseline-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	relay, _ := discardRelay()
	d := startDaemon(bin, writeConfig(dir, relay), filepath.Join(dir, "submit.sock"))
	defer d.stop()
	time.Sleep(idle)
	return memory(d.cmd.Process.Pid)["RssAnon"]
}

// queued asks the daemon how many messages it holds.
func queued(bin, cfg string) (int, error) {
	out, err := exec.Command(bin, "status", "--json", "-c", cfg).Output()
	if err != nil && len(out) == 0 { // status exits 1 when unhealthy, with the JSON still out
		return 0, err
	}
	var st struct {
		Queued *int `json:"queued"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Queued == nil {
		return 0, fmt.Errorf("status --json: no queued count in %q", out)
	}
	return *st.Queued, nil
}

// discardRelay serves SMTP on a loopback port, accepts every message and
// counts it, as bench/sink does.
func discardRelay() (string, *atomic.Int64) {
	var n atomic.Int64
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return discardSession{n: &n}, nil
	}))
	srv.Domain = "relay.backlog.test"
	srv.MaxMessageBytes = 64 << 20
	srv.MaxRecipients = 10000
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	return ln.Addr().String(), &n
}

type discardSession struct{ n *atomic.Int64 }

func (discardSession) Reset()                               {}
func (discardSession) Logout() error                        { return nil }
func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (s discardSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	if err == nil {
		s.n.Add(1)
	}
	return err
}
