package tests

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"relayq/queue"
	"relayq/transport/smtptest"
)

// TestAnswersWhileStarting: swaks and a raw SMTP session (loopback TCP)
// and `relayq sendmail` (Unix socket) → relayq serve while its queue file
// opens (40k held messages of 16 KB, ~700 MiB, its pages dropped from the
// page cache: the open takes about a second) → maildrop → smtptest relay.
//
// The listener answers within a short time of exec, long before the
// queue is open, and takes mail: a message gets "250 2.0.0 Ok: queued as
// <maildrop name> (relayq is starting…)" once it is on disk in the
// maildrop, never a refused connection or a 451. swaks and sendmail exit
// 0; `relayq status` says "starting" and exits 1. Once ready, the same
// session's next message goes into the queue directly, and the relay gets
// each of the five messages once, those taken while starting with the
// Received header of the session that took them (the HELO name and the
// TCP address), not the daemon's.
//
// The slow open is the one after a crash: the backlog's relayq is killed
// (kill -9) before the test, so that no freelist was saved
// (queue/freelist.go). At the end relayq is stopped cleanly and started
// again on the same file, cold: it is ready before it has read the file
// through (the walk after start, queue/pagewalk.go, ends after "relayq
// ready"), and a message sent then reaches the relay.
func TestAnswersWhileStarting(t *testing.T) {
	swaks := needTool(t, "swaks", "swaks")
	relay := smtptest.NewServer(t, smtptest.Options{})
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := newDaemon(t, relay, func(s settings) { s.set("submission", "listen", fmt.Sprintf("[%q]", listen)) })
	built := time.Now()
	buildHeldBacklog(t, d, 40000)
	t.Logf("queued and held 40k messages in %v", time.Since(built).Round(time.Millisecond))
	d.start()
	d.kill() // as after a crash: the next start reads the file through first
	dropFromCache(t, filepath.Join(d.dir, "queue.db"))

	start := time.Now()
	d.mu.Lock()
	d.proc = d.spawn()
	d.mu.Unlock()

	// The first answer: dial from exec on, every 2 ms.
	var s *smtpSession
	waitFor(t, 10*time.Second, "the loopback listener to answer", func() bool {
		s = dialSession(listen)
		return s != nil
	})
	first := time.Since(start)
	defer s.close()
	s.expect(t, "EHLO tests.localhost", "250 ")
	s.expect(t, "MAIL FROM:<early@example.org>", "250 ")
	s.expect(t, "RCPT TO:<early@example.net>", "250 ")
	s.expect(t, "DATA", "354 ")
	kept := s.expect(t, "Subject: early\r\n\r\ntaken while starting\r\n.", "250 2.0.0 Ok: queued as ")
	accepted := time.Since(start)
	if !strings.Contains(kept, "(relayq is starting") {
		t.Errorf("250 while starting: %q does not say the message waits in the maildrop", kept)
	}
	t.Logf("first answer %v after exec, first 250 %v", first.Round(time.Millisecond), accepted.Round(time.Millisecond))
	if accepted > 5*time.Second {
		t.Errorf("first 250 %v after exec, want it within seconds", accepted)
	}

	// While the queue opens: sendmail and swaks, at once.
	var wg sync.WaitGroup
	var viaSendmail, viaSwaks, status cmdResult
	wg.Go(func() { status = d.relayq("status") })
	wg.Go(func() {
		viaSendmail = d.sendmail([]byte("Subject: during start\r\n\r\nsent while relayq starts\r\n"), "-v", "-f", "cron@example.org", "during@example.net")
	})
	wg.Go(func() {
		viaSwaks = runCmd(swaks, nil, "--server", listen, "--from", "swaks@example.org", "--to", "swaks-early@example.net", "--header", "Subject: swaks", "--body", "swaks body")
	})
	wg.Wait()
	if viaSendmail.code != 0 || !strings.Contains(viaSendmail.stdout+viaSendmail.stderr, "queued") {
		t.Errorf("relayq sendmail while starting: %v; want exit 0, queued", viaSendmail)
	}
	if viaSwaks.code != 0 || !strings.Contains(viaSwaks.stdout, "(relayq is starting") {
		t.Errorf("swaks while starting: %v; want 250, kept in the maildrop while relayq starts", viaSwaks)
	}
	if status.code != 1 || !strings.Contains(status.stdout, "relayq is starting") {
		t.Errorf("relayq status while starting: %v; want exit 1 saying relayq is starting", status)
	}
	if d.ready() {
		t.Fatalf("relayq was ready %v after exec, before the checks while starting ended: the queue opened too fast for this test", time.Since(start))
	}

	waitFor(t, 60*time.Second, "relayq to be ready", d.ready)
	t.Logf("ready %v after exec", time.Since(start).Round(time.Millisecond))
	s.expect(t, "MAIL FROM:<early@example.org>", "250 ")
	s.expect(t, "RCPT TO:<late@example.net>", "250 ")
	s.expect(t, "DATA", "354 ")
	if got := s.expect(t, "Subject: late\r\n\r\nsame session\r\n.", "250 2.0.0 Ok: queued as "); strings.Contains(got, "starting") {
		t.Errorf("250 once ready: %q, want the queue ID", got)
	}
	viaSwaks = runCmd(swaks, nil, "--server", listen, "--from", "swaks@example.org", "--to", "swaks@example.net", "--header", "Subject: swaks", "--body", "swaks body")
	if viaSwaks.code != 0 || !strings.Contains(viaSwaks.stdout, "250 2.0.0 Ok: queued as") {
		t.Errorf("swaks once ready: %v; want 250", viaSwaks)
	}

	const want = 5
	relay.WaitMessages(t, want, 30*time.Second)
	time.Sleep(time.Second) // a duplicate would come right after
	got := relay.Messages()
	count := map[string]int{}
	for _, m := range got {
		rcpt := strings.Join(m.To, ",")
		count[rcpt]++
		if rcpt == "early@example.net" && !strings.HasPrefix(string(m.Body), "Received: from tests.localhost ([127.0.0.1]") {
			t.Errorf("the message taken while starting lost its session's Received header:\n%s", m.Body)
		}
	}
	for _, rcpt := range []string{"during@example.net", "early@example.net", "swaks-early@example.net", "late@example.net", "swaks@example.net"} {
		if count[rcpt] != 1 {
			t.Errorf("relay got %d messages for %s, want 1 (all: %v)", count[rcpt], rcpt, count)
		}
	}
	if len(got) != want {
		t.Errorf("relay got %d messages, want %d: the held backlog stays", len(got), want)
	}

	// Stopped cleanly, relayq saved the freelist: started again cold, it
	// opens the file at once and reads it through in the background, and
	// takes mail into the maildrop meanwhile; it is ready (and commits)
	// only once it has read the file through, so that a damaged page
	// fails the start instead of crashing a commit.
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d after SIGTERM, want 0", code)
	}
	dropFromCache(t, filepath.Join(d.dir, "queue.db"))
	d.start()
	viaSwaks = runCmd(swaks, nil, "--server", listen, "--from", "swaks@example.org", "--to", "again@example.net", "--header", "Subject: swaks", "--body", "swaks body")
	if viaSwaks.code != 0 || !strings.Contains(viaSwaks.stdout, "250 2.0.0 Ok: queued as") {
		t.Errorf("swaks after a clean restart: %v; want 250", viaSwaks)
	}
	relay.WaitMessages(t, want+1, 30*time.Second)
	log := d.log.String()
	log = log[strings.LastIndex(log, "----- relayq serve, run"):] // this run's
	ready, walked := strings.Index(log, `msg="relayq ready"`), strings.Index(log, `msg="queue file read through after start`)
	if ready < 0 || walked < 0 || walked > ready {
		t.Errorf("after a clean stop, relayq was ready before it had read the queue file through (ready at %d, read through at %d in the log):\n%s", ready, walked, log)
	}
}

// buildHeldBacklog fills d's queue with n messages on hold (so the relay
// gets none of them): a large file to open. d must not be running.
func buildHeldBacklog(tb testing.TB, d *daemon, n int) {
	tb.Helper()
	q, err := queue.Open(filepath.Join(d.dir, "queue.db"), queue.Options{MaxBatch: 2000})
	if err != nil {
		tb.Fatal(err)
	}
	defer q.Close()
	// 16 KB: the queue keeps it as 17 values of under 1 KB, each a key
	// Open's walks go through.
	body := []byte(strings.Repeat(strings.Repeat("x", 78)+"\r\n", 200))
	ids := make(chan string, n)
	work := make(chan int, 1000)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 500 {
		wg.Go(func() {
			for seq := range work {
				env := queue.Envelope{From: "backlog@example.org", Recipients: []string{fmt.Sprintf("held%d@example.net", seq)}}
				id, err := q.Put(context.Background(), env, body)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				ids <- id
			}
		})
	}
	for seq := range n {
		work <- seq
	}
	close(work)
	wg.Wait()
	close(ids)
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
	batch := make([]string, 0, 10000)
	hold := func() {
		if _, err := q.Hold(batch); err != nil {
			tb.Fatal(err)
		}
		batch = batch[:0]
	}
	for id := range ids {
		if batch = append(batch, id); len(batch) == cap(batch) {
			hold()
		}
	}
	hold()
}

// dropFromCache drops the pages of the file at path from the page cache,
// as a reboot would (only this file's: others test on this machine).
func dropFromCache(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		tb.Fatal(err)
	}
}

// smtpSession is a raw SMTP session, command by command.
type smtpSession struct {
	c net.Conn
	r *bufio.Reader
}

// dialSession connects to addr and reads a 220 greeting; nil if either
// fails.
func dialSession(addr string) *smtpSession {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	s := &smtpSession{c: c, r: bufio.NewReader(c)}
	if line, err := s.reply(); err != nil || !strings.HasPrefix(line, "220 ") {
		c.Close()
		return nil
	}
	return s
}

// reply reads one reply and returns its last line.
func (s *smtpSession) reply() (string, error) {
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return line, err
		}
		if line = strings.TrimRight(line, "\r\n"); len(line) < 4 || line[3] != '-' {
			return line, nil
		}
	}
}

// expect sends cmd and checks that the reply starts with want; it
// returns the reply's last line.
func (s *smtpSession) expect(t *testing.T, cmd, want string) string {
	t.Helper()
	if _, err := fmt.Fprintf(s.c, "%s\r\n", cmd); err != nil {
		t.Fatalf("%q: %v", cmd, err)
	}
	got, err := s.reply()
	if err != nil || !strings.HasPrefix(got, want) {
		t.Fatalf("%q: reply %q (%v), want %q…", cmd, got, err, want)
	}
	return got
}

func (s *smtpSession) close() { s.c.Close() }
