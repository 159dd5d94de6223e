// Command load is the benchmark's load generator. It submits N messages of
// a given size to a mail system and prints one JSON object: how many were
// acknowledged, when the first submission started and the last
// acknowledgement came, and the per-message acceptance latencies (p50, p99).
//
// Two modes:
//
//	load -smtp 127.0.0.1:2525 -n 20000 -c 10 -per 100 -run ID
//	    C concurrent SMTP sessions, each sending up to -per messages before
//	    it quits and reconnects; latency is MAIL FROM to the 250 after the
//	    final dot. -rate paces the submissions (messages per second, all
//	    sessions together) to measure latency below the peak. Each reply
//	    is awaited before the next command (go-smtp's client); -pipeline
//	    sends MAIL, RCPT and DATA in one write (RFC 2920), as Postfix's
//	    smtp client does.
//	load -n 500 -c 8 -run ID -- /usr/sbin/sendmail -C DIR rcpt@bench.test
//	    the command run N times, C at a time, the message on its standard
//	    input; latency is the command's wall time, and exit 0 is the
//	    acknowledgement.
//
// Every message has a header "X-Bench-Id: RUN-SEQ", which the sink (see
// bench/sink) counts, to check that every acknowledged message arrived.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	sender    = "load@bench.test"
	recipient = "sink@bench.test"
)

// report is what load prints.
type report struct {
	Mode       string  `json:"mode"`
	N          int     `json:"n"`
	Acked      int     `json:"acked"`
	Failed     int     `json:"failed"`
	FirstError string  `json:"first_error,omitempty"`
	StartNS    int64   `json:"start_ns"`
	LastAckNS  int64   `json:"last_ack_ns"`
	Seconds    float64 `json:"seconds"` // start to last acknowledgement
	Rate       float64 `json:"rate"`    // acknowledged messages per second
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMS      float64 `json:"max_ms"`
	CPUms      int64   `json:"cpu_ms"` // the load's own CPU time (user + system), without the commands it runs
}

// message builds message seq of the run: headers, then filler lines up to
// size bytes, CRLF throughout.
func message(run string, seq, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Load <%s>\r\nTo: <%s>\r\nSubject: bench %s %d\r\n", sender, recipient, run, seq)
	fmt.Fprintf(&b, "Message-ID: <%s.%d@bench.test>\r\nDate: %s\r\nX-Bench-Id: %s-%d\r\n\r\n",
		run, seq, time.Now().Format(time.RFC1123Z), run, seq)
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	for b.Len() < size-2 {
		b.WriteByte('x')
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// collector gathers the outcome of every message from all workers.
type collector struct {
	mu       sync.Mutex
	lat      []time.Duration
	failed   int
	firstErr error
	lastAck  time.Time
}

func (c *collector) ok(d time.Duration, at time.Time) {
	c.mu.Lock()
	c.lat = append(c.lat, d)
	if at.After(c.lastAck) {
		c.lastAck = at
	}
	c.mu.Unlock()
}

func (c *collector) fail(err error) {
	c.mu.Lock()
	c.failed++
	if c.firstErr == nil {
		c.firstErr = err
	}
	c.mu.Unlock()
}

func (c *collector) report(mode string, n int, start time.Time) report {
	slices.Sort(c.lat)
	r := report{Mode: mode, N: n, Acked: len(c.lat), Failed: c.failed, StartNS: start.UnixNano()}
	if c.firstErr != nil {
		r.FirstError = c.firstErr.Error()
	}
	if len(c.lat) > 0 {
		r.LastAckNS = c.lastAck.UnixNano()
		r.Seconds = c.lastAck.Sub(start).Seconds()
		r.Rate = float64(len(c.lat)) / r.Seconds
		r.P50ms = quantile(c.lat, 0.50)
		r.P99ms = quantile(c.lat, 0.99)
		r.MaxMS = ms(c.lat[len(c.lat)-1])
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.CPUms = (ru.Utime.Nano() + ru.Stime.Nano()) / 1e6
	}
	return r
}

func quantile(sorted []time.Duration, q float64) float64 {
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return ms(sorted[i])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pacer hands out message numbers, each no earlier than its slot when a rate
// is set.
type pacer struct {
	next  atomic.Int64
	n     int64
	start time.Time
	every time.Duration // 0: no pacing
}

// take returns the next message number, or false when all are taken.
func (p *pacer) take() (int, bool) {
	i := p.next.Add(1) - 1
	if i >= p.n {
		return 0, false
	}
	if p.every > 0 {
		time.Sleep(time.Until(p.start.Add(time.Duration(i) * p.every)))
	}
	return int(i), true
}

// session is one SMTP session of the load: go-smtp's client, which waits
// for each reply before the next command (as by default), or with
// -pipeline a client that pipelines as Postfix's smtp client does.
type session interface {
	send(msg []byte) error
	Quit() error
	Close() error
}

// smtpWorker runs sessions until the pacer runs out, each of up to per
// messages.
func smtpWorker(addr, run string, size, per int, pipeline bool, p *pacer, c *collector) {
	var cl session
	sent := 0
	defer func() {
		if cl != nil {
			cl.Quit()
		}
	}()
	for {
		seq, ok := p.take()
		if !ok {
			return
		}
		if cl != nil && per > 0 && sent >= per {
			cl.Quit()
			cl = nil
		}
		msg := message(run, seq, size)
		t0 := time.Now()
		if cl == nil {
			var err error
			if cl, err = dial(addr, pipeline); err != nil {
				c.fail(err)
				continue
			}
			sent = 0
			t0 = time.Now() // connection setup is not message latency
		}
		if err := cl.send(msg); err != nil {
			c.fail(fmt.Errorf("message %d: %w", seq, err))
			cl.Close()
			cl = nil
			continue
		}
		now := time.Now()
		c.ok(now.Sub(t0), now)
		sent++
	}
}

func dial(addr string, pipeline bool) (session, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if pipeline {
		return newPipeliner(nc)
	}
	cl := smtp.NewClient(nc)
	cl.CommandTimeout = time.Minute
	cl.SubmissionTimeout = time.Minute
	if err := cl.Hello("load.bench.test"); err != nil {
		cl.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	return goSMTP{cl}, nil
}

// goSMTP is go-smtp's client: MAIL, RCPT, DATA, the message, each reply
// awaited before the next.
type goSMTP struct{ *smtp.Client }

func (g goSMTP) send(msg []byte) error {
	return g.SendMail(sender, []string{recipient}, bytes.NewReader(msg))
}

// pipeliner sends MAIL, RCPT and DATA in one write, then the message and
// its final dot in another (RFC 2920), as Postfix's smtp client does to a
// server that offers PIPELINING.
type pipeliner struct {
	net.Conn
	r   *bufio.Reader
	buf []byte
}

func newPipeliner(nc net.Conn) (*pipeliner, error) {
	p := &pipeliner{Conn: nc, r: bufio.NewReader(nc)}
	nc.SetDeadline(time.Now().Add(time.Minute))
	if err := p.expect("220"); err != nil {
		nc.Close()
		return nil, err
	}
	if err := p.command("EHLO load.bench.test\r\n", "250"); err != nil {
		nc.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	return p, nil
}

func (p *pipeliner) send(msg []byte) error {
	if bytes.HasPrefix(msg, []byte(".")) || bytes.Contains(msg, []byte("\n.")) || !bytes.HasSuffix(msg, []byte("\r\n")) {
		return errors.New("the message needs dot-stuffing or a final CRLF, which -pipeline does not do")
	}
	p.SetDeadline(time.Now().Add(time.Minute))
	if err := p.command("MAIL FROM:<"+sender+">\r\nRCPT TO:<"+recipient+">\r\nDATA\r\n", "250", "250", "354"); err != nil {
		return err
	}
	p.buf = append(append(p.buf[:0], msg...), ".\r\n"...)
	if _, err := p.Write(p.buf); err != nil {
		return err
	}
	return p.expect("250")
}

func (p *pipeliner) Quit() error {
	defer p.Close()
	return p.command("QUIT\r\n", "221")
}

// command writes cmds and reads one reply per code, each expected to begin
// with its code.
func (p *pipeliner) command(cmds string, codes ...string) error {
	if _, err := io.WriteString(p, cmds); err != nil {
		return err
	}
	for _, code := range codes {
		if err := p.expect(code); err != nil {
			return err
		}
	}
	return nil
}

// expect reads one reply, every line of it beginning with code.
func (p *pipeliner) expect(code string) error {
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) {
			return fmt.Errorf("reply %q, want %s", strings.TrimSpace(line), code)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}

// execWorker runs the command once per message.
func execWorker(argv []string, run string, size int, p *pacer, c *collector) {
	for {
		seq, ok := p.take()
		if !ok {
			return
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin = bytes.NewReader(message(run, seq, size))
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		now := time.Now()
		if err != nil {
			c.fail(fmt.Errorf("message %d: %v: %s", seq, err, bytes.TrimSpace(out)))
			continue
		}
		c.ok(now.Sub(t0), now)
	}
}

func main() {
	addr := flag.String("smtp", "", "SMTP address to load; without it, run the command after --")
	n := flag.Int("n", 1000, "messages")
	conc := flag.Int("c", 10, "concurrent sessions (or commands)")
	per := flag.Int("per", 100, "messages per SMTP session (0: no limit)")
	size := flag.Int("size", 5120, "message size in bytes")
	rate := flag.Float64("rate", 0, "messages per second, all sessions together (0: as fast as possible)")
	pipeline := flag.Bool("pipeline", false, "SMTP: pipeline MAIL, RCPT and DATA (RFC 2920) as Postfix's smtp client does, instead of awaiting each reply")
	run := flag.String("run", "r", "run id, in every message's X-Bench-Id header")
	flag.Parse()
	log.SetPrefix("load: ")
	if (*addr == "") == (flag.NArg() == 0) {
		log.Fatal("give either -smtp ADDR or a command after --")
	}

	p := &pacer{n: int64(*n), start: time.Now()}
	if *rate > 0 {
		p.every = time.Duration(float64(time.Second) / *rate)
	}
	c := &collector{lat: make([]time.Duration, 0, *n)}
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			if *addr != "" {
				smtpWorker(*addr, *run, *size, *per, *pipeline, p, c)
			} else {
				execWorker(flag.Args(), *run, *size, p, c)
			}
		})
	}
	wg.Wait()
	mode := "smtp"
	if *addr == "" {
		mode = "exec"
	}
	if err := json.NewEncoder(os.Stdout).Encode(c.report(mode, *n, p.start)); err != nil {
		log.Fatal(err)
	}
}
