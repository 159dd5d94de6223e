package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"relayq/smallfs"
	"relayq/transport/smtptest"
)

// TestFullQueueSendsEachMessageOnce: SMTP on the unix socket → relayq whose
// queue is on a 6 MiB tmpfs → smtptest relay that is down (451 to every
// recipient). Mail is submitted until intake answers 452 4.3.1; then
// something else takes the last of the disk, and the relay comes back.
// The relay must receive exactly the acknowledged messages, each once:
// a delivery whose outcome cannot be recorded at once is held, not sent
// again (it was sent again at once, in a loop: 490 arrivals for 56
// messages, the daemon spinning). relayq stays idle while it waits for
// room, and after the queue has drained; the queue file passes
// `relayq queue check`.
func TestFullQueueSendsEachMessageOnce(t *testing.T) {
	mnt := smallfs.Mount(t, "6m")
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{"*": smtptest.Times(1_000_000, smtptest.Reply(451, "4.3.0 Not now"))},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("queue", "path", tomlString(filepath.Join(mnt, "queue.db")))
		// min_free is left at its default, twice this: 512 KiB.
		s.set("submission", "max_message_size", `"256KiB"`)
	})

	acked := map[int][]byte{}
	refused := map[int]bool{}
	for seq := 1; len(refused) < 3; seq++ {
		if seq > 2000 {
			t.Fatalf("no 452 after %d messages on a 6 MiB file system", len(acked))
		}
		from, to := fmt.Sprintf("full%d@example.org", seq), []string{fmt.Sprintf("rcpt%d@example.net", seq)}
		body := newMessage(seq, from, to, 700) // about 42 KB
		switch _, err := submitSMTP("unix", d.submitSocket(), from, to, body); {
		case err == nil:
			acked[seq] = body
		case replyCode(err) == "452 4.3.1":
			refused[seq] = true
		default:
			t.Fatalf("message %d: %v, want 250 or 452 4.3.1", seq, err)
		}
	}
	t.Logf("%d messages acknowledged, then 452 4.3.1 with %d bytes free", len(acked), freeBytes(t, mnt))

	// Something else takes the rest of the disk; the relay comes back.
	filler := filepath.Join(mnt, "filler")
	smallfs.Fill(t, filler)
	relay.SetScript(smtptest.Script{})
	arrivals := func() map[int]int {
		n := map[int]int{}
		for _, r := range relay.Messages() {
			n[seqOf(r.Body)]++
		}
		return n
	}
	allArrived := func() bool {
		got := arrivals()
		for seq := range acked {
			if got[seq] == 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(90 * time.Second); !allArrived(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			got := arrivals()
			t.Fatalf("after 90s, %d of the %d acknowledged messages have arrived, in %d deliveries", len(got), len(acked), len(relay.Messages()))
		}
	}
	pid := d.running().cmd.Process.Pid
	if busy := cpuShare(t, pid, 2*time.Second); busy > 0.2 {
		t.Errorf("relayq used %.0f%% of a CPU on the full disk with every message sent, want it idle", busy*100)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	d.waitQueueEmpty(t, 60*time.Second)
	for seq, n := range arrivals() {
		switch {
		case refused[seq]:
			t.Errorf("message %d was refused with 452 but arrived %d times", seq, n)
		case acked[seq] == nil:
			t.Errorf("message %d arrived %d times, but was never acknowledged", seq, n)
		case n != 1:
			t.Errorf("message %d arrived %d times, want once", seq, n)
		}
	}
	for _, r := range relay.Messages() {
		if want := acked[seqOf(r.Body)]; want != nil && string(r.Body) != string(want) {
			t.Errorf("message %d arrived altered", seqOf(r.Body))
		}
	}
	if busy := cpuShare(t, pid, 2*time.Second); busy > 0.2 {
		t.Errorf("relayq used %.0f%% of a CPU with the queue empty, want it idle", busy*100)
	}
	if code := d.stop(); code != 0 {
		t.Errorf("relayq serve exited %d after SIGTERM, want 0", code)
	}
	checkQueueFile(t, d)
}

// cpuShare is the share of one CPU that process pid used over the next
// period (user and system time, from /proc/PID/stat).
func cpuShare(t *testing.T, pid int, period time.Duration) float64 {
	t.Helper()
	before, start := cpuTicks(t, pid), time.Now()
	time.Sleep(period)
	used, elapsed := cpuTicks(t, pid)-before, time.Since(start)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return float64(used) / ticksPerSecond / elapsed.Seconds()
}

// cpuTicks is utime + stime of pid, in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// "pid (comm) state ppid …": comm may hold spaces; utime and stime
	// are the 12th and 13th fields after it.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return utime + stime
}
