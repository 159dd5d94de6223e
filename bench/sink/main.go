// Command sink is the benchmark's upstream relay: an SMTP server on a
// loopback port that accepts every message, throws it away and counts it.
//
// Each message the load generator sends carries an "X-Bench-Id: RUN-SEQ"
// header; the sink counts, per run, the messages received and the distinct
// ids among them, and remembers when the last one arrived. The harness reads
// these over HTTP (GET /stats?run=RUN, one line: "total distinct
// last_unix_nano") to time end-to-end delivery and to check that every
// acknowledged message arrived exactly once: zero lost.
//
//	sink -addr 127.0.0.1:0 -stats 127.0.0.1:0 -ready FILE
//	    serve; FILE gets "SMTPADDR STATSADDR" once both listen
//	sink -query STATSADDR -run RUN -want N -timeout 2m
//	    wait until the sink has N distinct messages of RUN (or the timeout)
//	    and print {"total":…,"distinct":…,"last_ns":…,"complete":…}
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// idHeader names the header that carries the message's benchmark id.
const idHeader = "X-Bench-Id:"

// runStats is what the sink knows about one run.
type runStats struct {
	total int64
	ids   map[string]struct{}
	last  time.Time
}

// counter holds the counts of every run seen, and of messages without an id.
type counter struct {
	mu   sync.Mutex
	runs map[string]*runStats
}

func (c *counter) add(run, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.runs[run]
	if s == nil {
		s = &runStats{ids: map[string]struct{}{}}
		c.runs[run] = s
	}
	s.total++
	if id != "" {
		s.ids[id] = struct{}{}
	}
	s.last = time.Now()
}

func (c *counter) get(run string) (total, distinct int64, last time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.runs[run]
	if s == nil {
		return 0, 0, time.Time{}
	}
	return s.total, int64(len(s.ids)), s.last
}

func (c *counter) serveHTTP(w http.ResponseWriter, r *http.Request) {
	total, distinct, last := c.get(r.URL.Query().Get("run"))
	var ns int64
	if !last.IsZero() {
		ns = last.UnixNano()
	}
	fmt.Fprintf(w, "%d %d %d\n", total, distinct, ns)
}

// session discards what it receives and counts each message under the run
// named in its X-Bench-Id header ("" when it has none).
type session struct{ c *counter }

func (s *session) Reset()                               {}
func (s *session) Logout() error                        { return nil }
func (s *session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (s *session) Data(r io.Reader) error {
	br := bufio.NewReader(r)
	id := ""
	for {
		line, err := br.ReadSlice('\n')
		if len(bytes.TrimSpace(line)) == 0 || err != nil {
			break // end of the header
		}
		if len(line) > len(idHeader) && bytes.EqualFold(line[:len(idHeader)], []byte(idHeader)) {
			id = string(bytes.TrimSpace(line[len(idHeader):]))
			break
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	run := id
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		run = id[:i]
	}
	s.c.add(run, id)
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "SMTP listen address (loopback)")
	stats := flag.String("stats", "127.0.0.1:0", "HTTP address for GET /stats?run=RUN")
	ready := flag.String("ready", "", "write \"SMTPADDR STATSADDR\" to this file once listening")
	query := flag.String("query", "", "ask the sink at this stats address instead of serving")
	run := flag.String("run", "", "with -query: the run")
	want := flag.Int64("want", 0, "with -query: wait for this many distinct messages")
	timeout := flag.Duration("timeout", 2*time.Minute, "with -query: how long to wait")
	flag.Parse()
	log.SetPrefix("sink: ")
	if *query != "" {
		if err := wait(*query, *run, *want, *timeout); err != nil {
			log.Fatal(err)
		}
		return
	}

	c := &counter{runs: map[string]*runStats{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{c: c}, nil
	}))
	srv.Domain = "sink.bench.test"
	srv.MaxMessageBytes = 64 << 20
	srv.MaxRecipients = 10000
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute

	sl, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	hl, err := net.Listen("tcp", *stats)
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(http.Serve(hl, http.HandlerFunc(c.serveHTTP))) }()
	go func() {
		if err := srv.Serve(sl); err != nil && err != smtp.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	if *ready != "" {
		line := fmt.Sprintf("%s %s\n", sl.Addr(), hl.Addr())
		if err := os.WriteFile(*ready, []byte(line), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Close()
}

// wait polls the sink at statsAddr until it has want distinct messages of
// run or timeout passes, and prints what it has.
func wait(statsAddr, run string, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	u := "http://" + statsAddr + "/stats?run=" + url.QueryEscape(run)
	for {
		resp, err := http.Get(u)
		if err != nil {
			return err
		}
		var total, distinct, last int64
		_, err = fmt.Fscan(resp.Body, &total, &distinct, &last)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", u, err)
		}
		complete := distinct >= want
		if complete || time.Now().After(deadline) {
			return json.NewEncoder(os.Stdout).Encode(map[string]any{
				"total": total, "distinct": distinct, "last_ns": last, "complete": complete})
		}
		time.Sleep(20 * time.Millisecond)
	}
}
