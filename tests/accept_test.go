package tests

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// nofileSoft reads the soft RLIMIT_NOFILE of process pid.
func nofileSoft(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Max open files\s+(\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no open files limit in /proc/%d/limits:\n%s", pid, b)
	}
	return string(m[1])
}

// TestAcceptRecoversFromEMFILE: the daemon runs out of file descriptors
// (prlimit lowers its RLIMIT_NOFILE below what it has open) while a client
// of each way in connects: `relayq queue list` on the control socket, SMTP
// on the submission socket and on the loopback listener. Every accept
// fails with EMFILE. Once the limit is raised, all three are answered
// without a restart: no accept loop gave up (the control socket's used to,
// for good). Each listener logs one line when accepting starts to fail,
// not one per retry.
func TestAcceptRecoversFromEMFILE(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatal("prlimit (util-linux) is needed")
	}
	relay := smtptest.NewServer(t, smtptest.Options{})
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, relay, func(s settings) { s.set("submission", "listen", fmt.Sprintf("[%q]", listen)) })
	pid := d.running().cmd.Process.Pid
	prlimit := func(soft string) {
		t.Helper()
		if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+soft+":").CombinedOutput(); err != nil {
			t.Fatalf("prlimit --nofile=%s: %v: %s", soft, err, out)
		}
	}
	soft := nofileSoft(t, pid)
	// 0, 1 and 2 are open: no descriptor is left for an accepted
	// connection.
	prlimit("3")
	raised := false
	defer func() {
		if !raised {
			prlimit(soft)
		}
	}()

	ctl := make(chan cmdResult, 1)
	go func() { ctl <- runCmd(relayqBin, nil, "queue", "list", "-c", d.config) }()
	type submitted struct {
		via string
		err error
	}
	subs := make(chan submitted, 2)
	for i, target := range [][2]string{{"unix", d.submitSocket()}, {"tcp", listen}} {
		go func() {
			from, to := fmt.Sprintf("emfile%d@example.org", i), []string{"rcpt@example.net"}
			_, err := submitSMTP(target[0], target[1], from, to, newMessage(i, from, to, 3))
			subs <- submitted{target[0], err}
		}()
	}
	failing := func() []map[string]string {
		return d.logRecords("cannot accept connections; retrying until it can (they wait in the backlog)")
	}
	waitFor(t, 30*time.Second, "each of the three listeners to fail an accept", func() bool {
		seen := map[string]bool{}
		for _, r := range failing() {
			seen[r["listen"]] = true
		}
		return seen[d.controlSocket()] && seen[d.submitSocket()] && seen[listen]
	})
	time.Sleep(2 * time.Second) // long enough for several retries of each
	prlimit(soft)
	raised = true

	select {
	case res := <-ctl:
		if res.code != 0 {
			t.Errorf("relayq queue list after the descriptors came back: %v", res)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("relayq queue list not answered 30s after the descriptors came back: the control socket stopped accepting")
	}
	for range 2 {
		select {
		case s := <-subs:
			if s.err != nil {
				t.Errorf("submission over %s after the descriptors came back: %v", s.via, s.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("a submission not answered 30s after the descriptors came back")
		}
	}
	relay.WaitMessages(t, 2, 20*time.Second)
	if res := runCmd(relayqBin, nil, "queue", "list", "-c", d.config); res.code != 0 {
		t.Errorf("control socket afterwards: %v", res)
	}
	per := map[string]int{}
	for _, r := range failing() {
		per[r["listen"]]++
	}
	for l, n := range per {
		if n != 1 {
			t.Errorf("listener %s logged %d lines about failing accepts in one run of failures, want 1", l, n)
		}
	}
	if n := strings.Count(d.log.String(), "accept error"); n > 0 {
		t.Errorf("go-smtp logged %d accept errors itself (one per retry)", n)
	}
	if d.running() == nil || d.running().cmd.Process.Pid != pid {
		t.Errorf("the daemon was restarted")
	}
}
