package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/queue"
	"relayq/transport/smtptest"
)

// buildBacklog fills d's queue with n due messages, as a daemon that
// crashed with that backlog would leave it (leases live in memory, so the
// messages its workers held are simply due). d must not be running.
func buildBacklog(tb testing.TB, d *daemon, n int) {
	tb.Helper()
	q, err := queue.Open(filepath.Join(d.dir, "queue.db"), queue.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer q.Close()
	// Put commits the changes that are waiting together: with many Puts
	// at once, each commit carries hundreds of messages.
	work := make(chan int, 1000)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 500 {
		wg.Go(func() {
			for seq := range work {
				from, to := fmt.Sprintf("backlog%d@example.org", seq), []string{fmt.Sprintf("rcpt%d@example.net", seq)}
				if _, err := q.Put(context.Background(), queue.Envelope{From: from, Recipients: to}, newMessage(seq, from, to, 2+seq%9)); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for seq := range n {
		work <- seq
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
}

// startupFigures is what measureStartup saw.
type startupFigures struct {
	ready    time.Duration // exec to the "relayq ready" log line
	hwm      int64         // VmHWM (peak resident set, bytes) at ready
	hwmBusy  int64         // VmHWM once the relay received deliverN messages
	rss      int64         // VmRSS (resident set now, bytes) at ready
	rssBusy  int64         // VmRSS once the relay received deliverN messages
	anonPeak int64         // largest RssAnon sampled (the heap, without the mapped queue file)
	filePeak int64         // largest RssFile sampled (mostly pages of the mapped queue file)
	fileSize int64         // size of the queue file
}

func (f startupFigures) String() string {
	return fmt.Sprintf("ready in %v; RSS %d MiB at ready, %d MiB while delivering; peak RSS %d MiB at ready, %d MiB while delivering (anonymous at most %d MiB, mapped file at most %d MiB; queue file %d MiB)",
		f.ready.Round(time.Millisecond), f.rss>>20, f.rssBusy>>20, f.hwm>>20, f.hwmBusy>>20, f.anonPeak>>20, f.filePeak>>20, f.fileSize>>20)
}

// measureStartup starts d, times it to "relayq ready" and samples its memory
// until the relay has received deliverN messages; then it kills d.
func measureStartup(tb testing.TB, d *daemon, relay *smtptest.Server, deliverN int) startupFigures {
	tb.Helper()
	var f startupFigures
	if fi, err := os.Stat(filepath.Join(d.dir, "queue.db")); err == nil {
		f.fileSize = fi.Size()
	}
	base := len(relay.Messages())
	logStart := len(d.log.String()) // this run's log follows
	start := time.Now()
	p := d.launch()
	pid := p.cmd.Process.Pid

	// Sample the resident set until the end (the samples are read once
	// the sampler has stopped).
	var anonPeak, filePeak int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := procStatus(pid); err == nil {
				anonPeak = max(anonPeak, st["RssAnon"])
				filePeak = max(filePeak, st["RssFile"])
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	stopSampling := sync.OnceFunc(func() {
		close(stop)
		<-sampled
	})
	defer stopSampling()

	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(d.log.String()[logStart:], `msg="relayq ready"`) {
		select {
		case <-p.done:
			tb.Fatalf("relayq serve exited during start-up (%v)", p.err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatal("relayq serve not ready after 2 minutes")
		}
		time.Sleep(time.Millisecond)
	}
	f.ready = time.Since(start)
	st, err := procStatus(pid)
	if err != nil {
		tb.Skipf("no /proc/%d/status: %v", pid, err)
	}
	f.hwm, f.rss = st["VmHWM"], st["VmRSS"]
	waitFor(tb, time.Minute, fmt.Sprintf("%d deliveries", deliverN), func() bool {
		return len(relay.Messages())-base >= deliverN
	})
	if st, err := procStatus(pid); err == nil {
		f.hwmBusy, f.rssBusy = st["VmHWM"], st["VmRSS"]
	}
	stopSampling()
	f.anonPeak, f.filePeak = anonPeak, filePeak
	d.kill()
	return f
}

// procStatus reads the "… kB" fields of /proc/PID/status, in bytes.
func procStatus(pid int) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.Lines(string(data)) {
		key, value, ok := strings.Cut(line, ":")
		value, kb := strings.CutSuffix(strings.TrimSpace(value), " kB")
		if !ok || !kb {
			continue
		}
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			out[key] = n << 10
		}
	}
	return out, nil
}

// TestStartupBacklog: relayq restarted after a crash on a queue of 10,000
// and then 100,000 messages → smtptest relay. It is ready quickly, its
// resident set while delivering stays under 64 MiB (the queue file's pages
// that bbolt reads at open are released once open, see queue/mapped.go),
// and its heap does not grow with the backlog: the larger backlog costs at
// most 64 MiB more anonymous memory. BenchmarkStartupBacklog reports the
// figures.
func TestStartupBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("building a 100,000-message queue takes a while; not with -short")
	}
	relay := smtptest.NewServer(t, smtptest.Options{})
	var figs []startupFigures
	for _, n := range []int{10000, 100000} {
		d := newDaemon(t, relay)
		buildBacklog(t, d, n)
		f := measureStartup(t, d, relay, 200)
		t.Logf("backlog of %d: %v", n, f)
		if f.ready > 30*time.Second {
			t.Errorf("backlog of %d: ready after %v, want well under 30s", n, f.ready)
		}
		if f.rssBusy > 64<<20 {
			t.Errorf("backlog of %d: resident set %d MiB while delivering, want at most 64 MiB", n, f.rssBusy>>20)
		}
		figs = append(figs, f)
	}
	if grew := figs[1].anonPeak - figs[0].anonPeak; grew > 64<<20 {
		t.Errorf("anonymous memory at start-up grew by %d MiB from a 10,000 to a 100,000 message backlog, want at most 64 MiB", grew>>20)
	}
}
