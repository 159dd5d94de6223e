package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAckFollowsFsync (catalogue A1): seen from the kernel, every
// "250 … queued" relayq writes to a submitter comes after fdatasync calls
// on the queue file that returned, after that message's 354: the commit is
// on the disk before the acknowledgement goes out. The daemon runs under
// strace (attached once it is up); the relay accepts connections and never
// greets, so no delivery commits while the messages are submitted one at a
// time, and the only syncs between a 354 and its 250 are that message's
// commit (bbolt syncs twice: its pages, then its meta page).
func TestAckFollowsFsync(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv(realPeersEnv) != "" {
			t.Fatalf("strace not found under %s=1 (tests/run.sh installs it): %v", realPeersEnv, err)
		}
		t.Skip("strace not installed; tests/run.sh installs it")
	}
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never greeted
		}
	}()
	d := startDaemon(t, nil, func(s settings) {
		s.set("relay", "url", tomlString("smtp://"+silent.Addr().String()))
		s.set("relay", "greeting_timeout", `"60s"`)
	})
	trace := filepath.Join(t.TempDir(), "strace.out")
	attached, err := os.Create(trace + ".stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer attached.Close()
	cmd := exec.Command(strace, "-f", "-y", "-s", "40", "-e", "trace=fdatasync,fsync,write,writev,sendto,sendmsg",
		"-o", trace, "-p", fmt.Sprint(d.running().cmd.Process.Pid))
	cmd.Stderr = attached
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stopTrace := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGINT) // detaches; relayq runs on
			cmd.Wait()
		}
	}
	defer stopTrace()
	// strace says so on stderr for each thread it attached to.
	waitFor(t, 10*time.Second, "strace to attach", func() bool {
		said, _ := os.ReadFile(attached.Name())
		return bytes.Contains(said, []byte("attached"))
	})
	time.Sleep(200 * time.Millisecond)

	const n = 5
	for i := range n {
		to := []string{fmt.Sprintf("acked%d@example.net", i)}
		d.submit(t, "a1@example.org", to, newMessage(i, "a1@example.org", to, 3))
	}
	stopTrace()

	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Lines are "PID syscall(args) = ret"; a call another thread interrupts
	// is split into "PID syscall(args <unfinished ...>" and later
	// "PID <... syscall resumed>...) = ret".
	syncs, acks, inData := 0, 0, false
	pending := map[string]bool{} // pid → an unfinished sync of the queue file
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		pid, call, _ := strings.Cut(line, " ")
		call = strings.TrimSpace(call)
		isSync := strings.HasPrefix(call, "fdatasync(") || strings.HasPrefix(call, "fsync(")
		switch {
		case isSync && strings.Contains(call, "queue.db") && strings.HasSuffix(call, "<unfinished ...>"):
			pending[pid] = true
		case isSync && strings.Contains(call, "queue.db") && strings.HasSuffix(call, ") = 0"):
			syncs++ // a sync of the queue file that returned
		case strings.HasPrefix(call, "<... fdatasync resumed>") || strings.HasPrefix(call, "<... fsync resumed>"):
			if pending[pid] && strings.HasSuffix(call, ") = 0") {
				syncs++
			}
			delete(pending, pid)
		case strings.Contains(call, `"354 `):
			syncs, inData = 0, true
		case strings.Contains(call, `"250 2.0.0 Ok: queued`):
			if !inData {
				t.Errorf("a 250 with no 354 before it in the trace: %s", line)
			}
			if syncs < 2 {
				t.Errorf("acknowledgement %d written after %d returned syncs of the queue file since its 354, want at least 2 (bbolt's commit): %s", acks+1, syncs, line)
			}
			acks++
			inData = false
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if acks != n {
		t.Fatalf("the trace holds %d acknowledgements, want %d (strace attached late or lost lines?)", acks, n)
	}
}
