package tests

import (
	"bufio"
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

// holdEnv names the socket the test binary, run again as another user,
// opens connections to and holds (holdConnections).
const holdEnv = "RELAYQ_TEST_HOLD_SOCKET"

// holdConnections opens 200 connections to the Unix socket sock, sends
// nothing on them, and prints how many the daemon kept open ("held N")
// once the refused ones have had their answer; then it holds those until
// its stdin closes.
func holdConnections(sock string) int {
	var held []net.Conn
	for range 200 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			continue
		}
		held = append(held, c)
	}
	open := 0
	buf := make([]byte, 256)
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := c.Read(buf); err != nil && os.IsTimeout(err) {
			open++ // no answer, not closed: the daemon keeps it
		}
	}
	fmt.Printf("held %d\n", open)
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// TestMailqSocketCapsEachUser: the mailq socket is open to every local
// user. A hostile one (nobody) opens 200 connections to it and sends
// nothing: the daemon keeps 8 of them (the per-user cap) and answers the
// rest "too many connections" at once; meanwhile another user's mailq
// works, and nobody's own mailq is told to try again (exit 75). The
// connections nobody holds are dropped after 10 s without a request.
func TestMailqSocketCapsEachUser(t *testing.T) {
	needRoot(t)
	d := startDaemon(t, nil)
	openStateDir(t, d)
	from, to := "cron@example.org", []string{"a@example.net"}
	d.submit(t, from, to, newMessage(1, from, to, 3))
	sock := filepath.Join(d.dir, "mailq.sock")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "rqhold")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "hold")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	relayq := publicBin(t) // copied before the 10 s the held connections last start
	cmd := exec.Command(bin)
	cmd.Env = append(testEnv(), holdEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the holding process: %v", err)
	}
	if strings.TrimSpace(line) != "held 8" {
		t.Errorf("the daemon kept %q of nobody's 200 idle connections, want 8", strings.TrimSpace(line))
	}

	// Both within the 10 s the daemon gives a connection to ask.
	res := asUser(relayq, nobody, nobody, nil, nil, "mailq", "-c", d.config)
	if res.code != 75 || !strings.Contains(res.stderr, "too many connections") {
		t.Errorf("nobody's own mailq over the cap: %v, want exit 75, try again", res)
	}
	res = d.relayq("mailq")
	if res.code != 0 || !strings.Contains(res.stdout, "a@example.net") {
		t.Errorf("mailq of another user while nobody holds connections: %v", res)
	}
	waitFor(t, 20*time.Second, "nobody's idle connections dropped", func() bool {
		res := asUser(relayq, nobody, nobody, nil, nil, "mailq", "-c", d.config)
		return res.code == 0
	})
}
