package tests

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestStderrClosedDoesNotKillDaemon: relayq serve → stderr a pipe whose
// reader goes away (`relayq serve 2>&1 | head`, a journald restart) →
// socket SMTP → smtptest relay. Go kills a program that writes to a broken
// pipe on fd 1 or 2 with SIGPIPE, unless it asks otherwise: the daemon must
// keep taking and delivering mail, and still stop cleanly on SIGTERM.
func TestStderrClosedDoesNotKillDaemon(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := newDaemon(t, relay)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(relayqBin, "serve", "-c", d.config)
	cmd.Stderr, cmd.Stdout, cmd.Env = w, w, testEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	// Read until the daemon is ready, then go away as `head` does.
	lines := bufio.NewScanner(r)
	for lines.Scan() && !strings.Contains(lines.Text(), "relayq ready") {
	}
	r.Close()

	for i := range 3 {
		if _, err := submitSMTP("unix", d.submitSocket(), "a@example.org", []string{"b@example.net"}, newMessage(i, "a@example.org", []string{"b@example.net"}, 3)); err != nil {
			t.Fatalf("submission %d after stderr was closed: %v", i, err)
		}
	}
	relay.WaitMessages(t, 3, 15*time.Second)
	select {
	case <-done:
		t.Fatalf("relayq serve died after its stderr was closed: %v", waitErr)
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("relayq serve after SIGTERM: %v, want exit 0", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("relayq serve still running 30s after SIGTERM")
	}
}
