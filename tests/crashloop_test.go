package tests

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// The crash loop of issue 5: 10,000 messages, submitted by several clients at
// once, while relayq is killed with SIGKILL again and again. See
// TestCrashLoop.
const (
	crashMessages    = 10000
	crashKills       = 24 // 8 of each kind
	crashSMTPClients = 6  // persistent connections on the unix socket
	crashSendmails   = 2  // `relayq sendmail` execs at a time
	crashWorkers     = 8  // [delivery] workers
	crashSlowEvery   = 40 // every 40th message the relay answers slowly…
	crashSlowReply   = 250 * time.Millisecond
)

// killKind is the moment a kill aims at.
type killKind int

const (
	// killIntake: while submissions are in flight, so that Puts are
	// waiting for (or inside) a group commit.
	killIntake killKind = iota
	// killInData: the relay has read a message's final dot and not
	// answered yet: the daemon is in DATA.
	killInData
	// killAfter250: the relay has just written 250 for a message; the
	// daemon has not recorded the delivery yet.
	killAfter250
)

func (k killKind) String() string {
	return [...]string{"intake", "in-DATA", "after-250"}[k]
}

// crashKiller kills the daemon from the relay's OnData hook, at the moment
// it is armed for.
type crashKiller struct {
	d     atomic.Pointer[daemon]
	armed atomic.Int32 // 1+killKind armed for; 0 when not armed
	fired chan int     // X-Seq of the message the kill happened at
}

func (k *crashKiller) onData(at smtptest.DataPoint, msg []byte) {
	want := killInData
	if at == smtptest.DataAccepted {
		want = killAfter250
	}
	if !k.armed.CompareAndSwap(int32(1+want), 0) {
		return
	}
	if p := k.d.Load().running(); p != nil {
		p.cmd.Process.Kill()
	}
	k.fired <- seqOf(msg)
}

// crashClients submit the messages and keep the ledger: SMTP clients over
// persistent connections on the unix socket, and `relayq sendmail`, which
// also takes over a message an SMTP client could not connect for (the
// daemon is down: sendmail writes it to the maildrop).
type crashClients struct {
	d        *daemon
	l        *ledger
	inflight atomic.Int64 // SMTP transactions between MAIL and the final reply
	bodies   [][]byte     // by seq

	mu           sync.Mutex
	sendmailErrs []string // the first few things sendmail said when it failed
}

// crashEnvelope is the sender and recipients of message seq.
func crashEnvelope(seq int) (string, []string) {
	return fmt.Sprintf("crash%d@example.org", seq), []string{fmt.Sprintf("rcpt%d@example.net", seq)}
}

func (c *crashClients) message(seq int) (string, []string, []byte) {
	from, to := crashEnvelope(seq)
	return from, to, c.bodies[seq]
}

// viaSendmail submits seq with `relayq sendmail`; exit 0 is an
// acknowledgement.
func (c *crashClients) viaSendmail(seq int) {
	from, to, body := c.message(seq)
	res := c.d.sendmail(body, append([]string{"-oi", "-f", from}, to...)...)
	if res.code != 0 {
		c.l.fail(fmt.Sprintf("sendmail exit %d", res.code))
		c.mu.Lock()
		if len(c.sendmailErrs) < 3 {
			c.sendmailErrs = append(c.sendmailErrs, strings.TrimSpace(res.stderr))
		}
		c.mu.Unlock()
		return
	}
	c.l.ack(seq, body)
}

// smtpClient submits each seq from work over one connection, opened again
// after a failure. A message that failed before its final dot was sent is
// tried again on a new connection; if none can be made it goes to sendmail.
// One that failed after the dot is not acknowledged, and the client goes on.
func (c *crashClients) smtpClient(work <-chan int) {
	var cl *smtp.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for seq := range work {
		for {
			if cl == nil {
				nc, err := net.DialTimeout("unix", c.d.submitSocket(), 10*time.Second)
				if err != nil {
					c.viaSendmail(seq) // the daemon is down
					break
				}
				nc.SetDeadline(time.Now().Add(10 * time.Minute))
				cl = smtp.NewClient(nc)
			}
			sentDot, err := c.transaction(cl, seq)
			if err == nil {
				break
			}
			cl.Close()
			cl = nil
			if sentDot {
				c.l.fail("smtp, after the final dot")
				break
			}
		}
	}
}

// transaction sends seq on cl; sentDot reports whether the final dot may
// have reached the daemon.
func (c *crashClients) transaction(cl *smtp.Client, seq int) (sentDot bool, err error) {
	from, to, body := c.message(seq)
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	if err := cl.Mail(from, nil); err != nil {
		return false, err
	}
	for _, rcpt := range to {
		if err := cl.Rcpt(rcpt, nil); err != nil {
			return false, err
		}
	}
	w, err := cl.Data()
	if err != nil {
		return false, err
	}
	if _, err := w.Write(body); err != nil {
		return false, err
	}
	if _, err := w.CloseWithResponse(); err != nil {
		var reply *smtp.SMTPError
		if errors.As(err, &reply) && reply.Code/100 == 4 {
			c.l.fail(fmt.Sprintf("smtp %d", reply.Code))
			return false, nil // refused: not queued; go on with the next
		}
		return true, err
	}
	c.l.ack(seq, body)
	return false, nil
}

// killRecord is what one kill found.
type killRecord struct {
	kind     killKind
	hit      bool  // the kill happened at the moment its kind aims at
	at       int   // the X-Seq of the message the relay was handling (in-DATA, after-250)
	inflight int64 // SMTP submissions in flight when it was sent
	claimed  int   // maildrop files claimed (*.work) but not removed
	leased   int   // leases that can have been held at the kill (one per worker): deliveries in flight
	recovery time.Duration
}

// TestCrashLoop: 6 SMTP clients on the unix socket (persistent connections)
// and 2 `relayq sendmail` at a time, 10,000 messages in all → relayq, killed
// with SIGKILL 24 times and restarted each time → smtptest relay that answers
// every 40th message slowly. The kills aim in turn at three moments: while
// submissions are in flight (group commit), while the relay holds a
// message's final dot unanswered (DATA), and right after the relay's 250,
// before relayq records the delivery. Every acknowledged message reaches the
// relay; duplicates stay within the deliveries and maildrop imports that
// were in flight at the kills; the queue ends empty, with no dead letters.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash loop takes 30-60 s; not with -short")
	}
	k := &crashKiller{fired: make(chan int, 1)}
	var slow []smtptest.Step
	for i := range crashMessages + crashMessages/10 {
		if i%crashSlowEvery == crashSlowEvery-1 {
			slow = append(slow, smtptest.Step{Delay: crashSlowReply})
		} else {
			slow = append(slow, smtptest.Step{})
		}
	}
	relay := smtptest.NewServer(t, smtptest.Options{
		Script: smtptest.Script{Body: slow},
		OnData: k.onData,
	})
	d := newDaemon(t, relay, func(s settings) {
		s.set("delivery", "workers", strconv.Itoa(crashWorkers))
	})
	k.d.Store(d)
	d.start()

	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)

	c := &crashClients{d: d, l: &ledger{acked: map[int][]byte{}, failures: map[string]int{}}}
	for seq := range crashMessages {
		from, to := crashEnvelope(seq)
		c.bodies = append(c.bodies, newMessage(seq, from, to, 2+seq%9))
	}
	smtpWork, sendmailWork := make(chan int), make(chan int)
	var wg sync.WaitGroup
	for range crashSMTPClients {
		wg.Go(func() { c.smtpClient(smtpWork) })
	}
	for range crashSendmails {
		wg.Go(func() {
			for seq := range sendmailWork {
				c.viaSendmail(seq)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		for seq := range crashMessages {
			if seq%5 == 0 {
				sendmailWork <- seq
			} else {
				smtpWork <- seq
			}
		}
		close(smtpWork)
		close(sendmailWork)
		wg.Wait()
		close(done)
	}()

	started := time.Now()
	var kills []killRecord
	for i := range crashKills {
		// Spread the kills over the first 90% of the acknowledgements.
		waitAcks(c.l, int64((i+1)*crashMessages*9/10/(crashKills+1)), done)
		kills = append(kills, crashOnce(t, d, k, c, killKind(i%3), rng, done))
	}
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("submissions did not finish in 3 minutes")
	}
	submitted := time.Since(started)

	c.l.mu.Lock()
	acked, failures := c.l.acked, c.l.failures
	c.l.mu.Unlock()

	// Every acknowledged message at the relay.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		count := map[int]int{}
		for _, r := range relay.Messages() {
			count[seqOf(r.Body)]++
		}
		missing := 0
		for seq := range acked {
			if count[seq] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d acknowledged messages not at the relay after 2 minutes", missing)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.waitQueueEmpty(t, time.Minute)
	if dead := d.deadList(t); len(dead) != 0 {
		t.Errorf("%d messages dead-lettered, want none", len(dead))
	}
	if entries, err := os.ReadDir(d.maildrop()); err == nil && len(entries) != 0 {
		t.Errorf("%d files left in the maildrop", len(entries))
	}

	crashReport(t, c, d, relay, acked, failures, kills, submitted)
}

// crashOnce kills the daemon at a moment of kind, restarts it, and says
// what the kill found.
func crashOnce(t *testing.T, d *daemon, k *crashKiller, c *crashClients, kind killKind, rng *rand.Rand, done <-chan struct{}) killRecord {
	t.Helper()
	rec := killRecord{kind: kind}
	switch kind {
	case killIntake:
		// Wait for a crowd of submissions, then let them get a little
		// further: into the committer's queue, or its fdatasync.
		tick := time.NewTicker(time.Millisecond)
	crowd:
		for c.inflight.Load() < crashSMTPClients/2 {
			select {
			case <-done:
				break crowd
			case <-tick.C:
			}
		}
		tick.Stop()
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond) // a random moment, not a wait for relayq
		rec.inflight = c.inflight.Load()
		rec.hit = rec.inflight > 0
	default:
		k.armed.Store(int32(1 + kind))
		select {
		case rec.at = <-k.fired:
			rec.hit = true
		case <-time.After(10 * time.Second):
			// Nothing was delivered meanwhile: kill now.
			if !k.armed.CompareAndSwap(int32(1+kind), 0) {
				rec.at = <-k.fired
				rec.hit = true
			}
		}
		rec.inflight = c.inflight.Load()
	}
	killed := time.Now()
	d.kill()
	if entries, err := os.ReadDir(d.maildrop()); err == nil {
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".work") {
				rec.claimed++
			}
		}
	}
	d.start()
	rec.recovery = time.Since(killed)
	// Wait for this run's ready line.
	waitFor(t, 10*time.Second, "the ready log line", func() bool {
		return len(d.logRecords("relayq ready")) == d.runs
	})
	// Leases live in the daemon's memory only: the messages its workers
	// held are due again at once, at most one per worker.
	rec.leased = crashWorkers
	return rec
}

// crashReport checks the relay's messages against the ledger and prints the
// figures.
func crashReport(t *testing.T, c *crashClients, d *daemon, relay *smtptest.Server, acked map[int][]byte, failures map[string]int, kills []killRecord, took time.Duration) {
	t.Helper()
	msgs := relay.Messages()
	count := map[int]int{}
	dups := 0
	for _, r := range msgs {
		seq := seqOf(r.Body)
		if seq < 0 || seq >= len(c.bodies) {
			t.Errorf("the relay received a message that was never submitted: %.200q", r.Body)
			continue
		}
		if count[seq]++; count[seq] > 1 {
			dups++
		}
		if !sameMessage(r.Body, c.bodies[seq]) {
			t.Errorf("message %d arrived altered:\n got %q\nwant %q", seq, r.Body, c.bodies[seq])
		}
	}
	lost := 0
	for seq := range acked {
		if count[seq] == 0 {
			if lost++; lost <= 10 {
				t.Errorf("message %d was acknowledged but never delivered", seq)
			}
		}
	}
	unackedDelivered := 0
	for seq := range count {
		if _, ok := acked[seq]; !ok {
			unackedDelivered++
		}
	}

	var bound, hits, inflight int
	var byKind [3]int
	var recoveries []time.Duration
	aimedDups := 0 // after-250 kills whose message did arrive twice
	for _, k := range kills {
		bound += k.leased + k.claimed
		inflight += int(k.inflight)
		recoveries = append(recoveries, k.recovery)
		if k.hit {
			hits++
			byKind[k.kind]++
		}
		if k.kind == killAfter250 && k.hit && count[k.at] > 1 {
			aimedDups++
		}
		at := "-"
		if k.kind != killIntake {
			at = strconv.Itoa(k.at)
		}
		t.Logf("kill %-9s hit=%-5v seq=%-5s smtp-in-flight=%-2d maildrop-claimed=%d recovery=%v",
			k.kind, k.hit, at, k.inflight, k.claimed, k.recovery.Round(time.Millisecond))
	}
	slices.Sort(recoveries)
	var sum time.Duration
	for _, r := range recoveries {
		sum += r
	}
	t.Logf("%d messages submitted in %v: %d acknowledged; not acknowledged: %v", len(c.bodies), took.Round(time.Millisecond), len(acked), failures)
	c.mu.Lock()
	for _, e := range c.sendmailErrs {
		t.Logf("sendmail failed: %s", e)
	}
	c.mu.Unlock()
	t.Logf("relay received %d transactions: %d distinct messages, %d of them never acknowledged, %d duplicates (bound: %d deliveries and maildrop imports in flight at the kills); %d possible_duplicate log lines",
		len(msgs), len(count), unackedDelivered, dups, bound, possibleDuplicates(d))
	t.Logf("kills: %d at intake (%d SMTP submissions in flight in all), %d in DATA, %d after the relay's 250 (%d of those messages delivered again); recovery kill→ready: median %v, max %v, mean %v",
		byKind[killIntake], inflight, byKind[killInData], byKind[killAfter250], aimedDups,
		recoveries[len(recoveries)/2].Round(time.Millisecond), recoveries[len(recoveries)-1].Round(time.Millisecond), (sum / time.Duration(len(recoveries))).Round(time.Millisecond))
	figure := fmt.Sprintf("lost=%d duplicates=%d kills=%d", lost, dups, len(kills))
	t.Log(figure)
	fmt.Println(figure)

	if dups > bound {
		t.Errorf("%d duplicates, more than the %d deliveries and maildrop imports in flight at the kills", dups, bound)
	}
	if len(kills) < 20 {
		t.Errorf("%d kills, want at least 20", len(kills))
	}
	for kind, n := range byKind {
		if n == 0 {
			t.Errorf("no kill hit its moment %v", killKind(kind))
		}
	}
	if byKind[killAfter250] > 0 && aimedDups == 0 {
		t.Errorf("none of the %d messages the relay had just answered 250 for when relayq was killed was delivered again: the kills missed the window before the delivery is recorded", byKind[killAfter250])
	}
	// Each of those redeliveries is marked: the kill interrupted a lease
	// the in-flight journal had noted.
	if pd := possibleDuplicates(d); pd < aimedDups {
		t.Errorf("%d possible_duplicate log lines, fewer than the %d messages delivered again after a kill right after the relay's 250", pd, aimedDups)
	}
	if len(acked) < len(c.bodies)/2 {
		t.Errorf("only %d of %d submissions acknowledged", len(acked), len(c.bodies))
	}
}
