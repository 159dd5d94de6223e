package tests

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// switchRelay points d at relay and has the daemon reload its
// configuration, then makes every message due.
func switchRelay(t *testing.T, d *daemon, relay *smtptest.Server) {
	t.Helper()
	d.settings.set("relay", "url", tomlString(relayURL(relay, false)))
	d.writeConfig()
	d.mustRelayq(t, "reload")
	d.mustRelayq(t, "flush")
}

func queueFileSize(t *testing.T, d *daemon) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(d.dir, "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCompactWhileServing: 1,200 messages of 30 KB wait for a relay that
// is down; once another relay has taken them all, the queue file is
// mostly free pages. `relayq compact` with the daemon running rewrites it
// while it runs: the file shrinks to a fraction, the daemon (same
// process) goes on taking and delivering mail, `queue status` still knows
// a message delivered before, and after a clean stop the file passes
// `relayq queue check` and no copy is left beside it.
func TestCompactWhileServing(t *testing.T) {
	good := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, nil, func(s settings) { s.set("queue", "compact_free", `"0"`) })
	pid := d.running().cmd.Process.Pid
	const n = 1200
	from, to := "bulk@example.org", []string{"rcpt@example.net"}
	first := d.submit(t, from, to, newMessage(0, from, to, 600))
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Go(func() {
			for seq := range work {
				d.submit(t, from, to, newMessage(seq, from, to, 600))
			}
		})
	}
	for seq := 1; seq < n; seq++ {
		work <- seq
	}
	close(work)
	wg.Wait()
	switchRelay(t, d, good)
	waitFor(t, 2*time.Minute, "every message at the good relay", func() bool { return len(good.Messages()) >= n })
	d.waitQueueEmpty(t, 30*time.Second)
	before := queueFileSize(t, d)

	res := d.relayq("compact")
	if res.code != 0 || !strings.Contains(res.stdout, "while relayq runs") {
		t.Fatalf("relayq compact with the daemon running: %v", res)
	}
	after := queueFileSize(t, d)
	t.Logf("queue file %d → %d bytes: %s", before, after, strings.TrimSpace(res.stdout))
	if before < 30<<20 || after > before/4 {
		t.Fatalf("queue file went from %d to %d bytes", before, after)
	}
	if d.running().cmd.Process.Pid != pid {
		t.Fatal("the daemon restarted")
	}
	if st := d.relayq("queue", "status", first); st.code != 0 || !strings.Contains(st.stdout, "delivered") {
		t.Errorf("queue status of a message delivered before the compaction: %v", st)
	}
	for seq := n; seq < n+20; seq++ {
		d.submit(t, from, to, newMessage(seq, from, to, 20))
	}
	waitFor(t, 30*time.Second, "the messages submitted after the compaction", func() bool { return len(good.Messages()) >= n+20 })
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d", code)
	}
	if res := d.relayq("queue", "check"); res.code != 0 {
		t.Errorf("queue check after the compaction: %v", res)
	}
	if left, _ := filepath.Glob(filepath.Join(d.dir, "queue.db.compact-*")); len(left) > 0 {
		t.Errorf("copies left beside the queue file: %v", left)
	}
}

// TestKill9DuringCompaction: 300 messages of 40 KB wait for a relay that
// is down while `relayq compact` copies the file again and again;
// relayq is killed with SIGKILL at a random moment of a copy (or of its
// swap) five times and restarted, with sendmail and SMTP submitters going
// on all the while. Then another relay takes the queue: every
// acknowledged message arrives exactly once (nothing was delivered
// before, so the duplicate window never opened), nothing is
// dead-lettered, and no copy is left beside the queue file.
func TestKill9DuringCompaction(t *testing.T) {
	good := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, nil, func(s settings) { s.set("queue", "compact_free", `"0"`) })
	l := &ledger{acked: map[int][]byte{}, failures: map[string]int{}}
	for seq := range 300 {
		from, to := fmt.Sprintf("kill%d@example.org", seq), []string{fmt.Sprintf("rcpt%d@example.net", seq)}
		body := newMessage(seq, from, to, 800)
		d.submit(t, from, to, body)
		l.ack(seq, body)
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)

	work := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for seq := range work {
				submitForKill(d, l, seq)
			}
		})
	}
	stopSubmitting := make(chan struct{})
	go func() {
		defer close(work)
		for seq := 1000; ; seq++ {
			select {
			case work <- seq:
			case <-stopSubmitting:
				return
			}
		}
	}()
	compacted := 0
	for kill := range 5 {
		// A compaction or two run to the end; the next is killed.
		for range 1 + kill%2 {
			if res := d.relayq("compact"); res.code == 0 {
				compacted++
			} else {
				t.Logf("relayq compact: %v", res)
			}
		}
		done := make(chan cmdResult, 1)
		go func() { done <- d.relayq("compact") }()
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		d.kill()
		// A call that never reached the daemon compacted the file itself.
		t.Logf("kill %d: relayq compact: %v", kill, <-done)
		d.start()
	}
	close(stopSubmitting)
	wg.Wait()
	if compacted == 0 {
		t.Fatal("no compaction ran to its end")
	}
	l.mu.Lock()
	acked := l.acked
	t.Logf("%d compactions ran to the end; %d messages acknowledged; not acknowledged: %v", compacted, len(acked), l.failures)
	l.mu.Unlock()

	switchRelay(t, d, good)
	waitFor(t, 2*time.Minute, "every acknowledged message at the good relay", func() bool {
		seen := map[int]bool{}
		for _, r := range good.Messages() {
			seen[seqOf(r.Body)] = true
		}
		for seq := range acked {
			if !seen[seq] {
				return false
			}
		}
		return true
	})
	d.waitQueueEmpty(t, 30*time.Second)
	count := map[int]int{}
	for _, r := range good.Messages() {
		seq := seqOf(r.Body)
		count[seq]++
		if want, ok := acked[seq]; ok && !sameMessage(r.Body, want) {
			t.Errorf("message %d arrived altered", seq)
		}
	}
	for seq, c := range count {
		if c > 1 {
			t.Errorf("message %d arrived %d times", seq, c)
		}
	}
	if dead := d.deadList(t); len(dead) != 0 {
		t.Errorf("%d messages dead-lettered: %+v", len(dead), dead)
	}
	if left, _ := filepath.Glob(filepath.Join(d.dir, "queue.db.compact-*")); len(left) > 0 {
		t.Errorf("copies left beside the queue file after a restart: %v", left)
	}
}
