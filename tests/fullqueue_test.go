package tests

import (
	"encoding/json"
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
// something else takes the last of the disk, and the relay comes back;
// later the disk has room again.
// The relay must receive exactly the acknowledged messages, each once,
// while the disk is still full: a delivery whose outcome cannot be
// recorded at once is held, not sent again (it was sent again at once, in
// a loop: 490 arrivals for 56 messages, the daemon spinning), and the
// records of deliveries fit in the room the queue kept. relayq stays idle
// on the full disk and after the queue has drained; the queue file passes
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
	if sp := statusSpace(t, d); !sp.Refusing || sp.MinFree != 512<<10 {
		t.Errorf("relayq status once intake refused: %+v, want refusing with min_free 512 KiB", sp)
	}

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
	// With the disk full to the last byte, every acknowledged message goes
	// out, once: recording a delivery needs only single free pages (the
	// reserve's, then those the delivered bodies free), so the deliveries
	// pay for their own records. (When a delete rewrote the neighbouring
	// body, in CI only 13 of 105 went out and the rest stalled for good,
	// every worker holding an outcome it could not record.)
	for deadline := time.Now().Add(30 * time.Second); !allArrived(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("on the full disk, %d of the %d acknowledged messages arrived in 30s", len(arrivals()), len(acked))
		}
	}
	for seq, n := range arrivals() {
		if n != 1 {
			t.Errorf("on the full disk, message %d arrived %d times, want once", seq, n)
		}
	}
	pid := d.running().cmd.Process.Pid
	if busy := cpuShare(t, pid, 2*time.Second); busy > 0.2 {
		t.Errorf("relayq used %.0f%% of a CPU on the full disk, want it idle", busy*100)
	}

	// Room returns; the queue is empty.
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
		if want := acked[seqOf(r.Body)]; want != nil && !sameMessage(r.Body, want) { // after relayq's Received (stamp_test.go)
			t.Errorf("message %d arrived altered", seqOf(r.Body))
		}
	}
	if busy := cpuShare(t, pid, 2*time.Second); busy > 0.2 {
		t.Errorf("relayq used %.0f%% of a CPU with the queue empty, want it idle", busy*100)
	}
	// Intake takes mail again (after a few seconds: a message that did not
	// fit holds it back for a while).
	waitFor(t, 30*time.Second, "relayq status to say intake takes mail", func() bool { return !statusSpace(t, d).Refusing })
	from, to := "after@example.org", []string{"after@example.net"}
	if _, err := submitSMTP("unix", d.submitSocket(), from, to, newMessage(9999, from, to, 10)); err != nil {
		t.Errorf("submission once the queue drained: %v", err)
	}
	if code := d.stop(); code != 0 {
		t.Errorf("relayq serve exited %d after SIGTERM, want 0", code)
	}
	checkQueueFile(t, d)
}

// spaceStatus is the "space" object of `relayq status --json`.
type spaceStatus struct {
	Free     int64 `json:"free"`
	FileFree int64 `json:"file_free"`
	MinFree  int64 `json:"min_free"`
	Reserve  int64 `json:"reserve"`
	Refusing bool  `json:"refusing"`
}

// statusSpace runs `relayq status --json` and returns what it says of the
// queue's room; it must exit 1 (unhealthy) when intake refuses, else 0.
func statusSpace(t *testing.T, d *daemon) spaceStatus {
	t.Helper()
	res := d.relayq("status", "--json")
	var out struct {
		Space spaceStatus `json:"space"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("relayq status --json: %v (%v)", res, err)
	}
	if want := map[bool]int{true: 1, false: 0}[out.Space.Refusing]; res.code != want {
		t.Fatalf("relayq status --json: %v, want exit %d", res, want)
	}
	return out.Space
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
