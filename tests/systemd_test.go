package tests

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// activate opens the daemon's submission socket and a loopback listener
// the way relayq.socket does (held by the test, as systemd holds them),
// puts the loopback address in [submission] listen and hands both to every
// run of d. It returns the loopback address.
func activate(t *testing.T, d *daemon) string {
	t.Helper()
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.submitSocket(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d.submitSocket(), 0o666); err != nil { // SocketMode=0666
		t.Fatal(err)
	}
	tl, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ul.Close(); tl.Close() })
	for _, l := range []interface{ File() (*os.File, error) }{ul, tl} {
		f, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		d.activated = append(d.activated, f)
	}
	d.activatedNames = []string{"submit", "submit"}
	addr := tl.Addr().String()
	d.settings.set("submission", "listen", fmt.Sprintf("[%q]", addr))
	d.writeConfig()
	return addr
}

// TestSocketActivationRestart: SMTP clients on the unix socket and on the
// loopback listener, 6 at once → the sockets, held by the test as
// relayq.socket holds them → relayq, restarted (SIGTERM, a pause with no
// relayq at all, start: `systemctl restart`) five times → smtptest relay.
// No connection is refused: one made while relayq is down waits in the
// backlog and gets its 250 from the next relayq; every acknowledged message
// reaches the relay.
func TestSocketActivationRestart(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := newDaemon(t, relay)
	listen := activate(t, d)
	d.start()

	var (
		mu       sync.Mutex
		acked    = map[int][]byte{}
		cut      int // connections the stopping relayq closed before DATA (nothing acknowledged)
		refused  []error
		down     atomic.Bool  // relayq stopping or not running
		waited   atomic.Int64 // acknowledged, connected while no relayq ran
		seq      atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		networks = []string{"unix", "tcp"}
	)
	for i := range 6 {
		wg.Go(func() {
			network, addr := networks[i%2], d.submitSocket()
			if network == "tcp" {
				addr = listen
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := int(seq.Add(1))
				from, to := fmt.Sprintf("act%d@example.org", n), []string{"root@example.net"}
				body := newMessage(n, from, to, 3)
				wasDown := down.Load()
				_, err := submitSMTP(network, addr, from, to, body)
				mu.Lock()
				switch {
				case err == nil:
					acked[n] = body
					if wasDown {
						waited.Add(1)
					}
				case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.EAGAIN):
					refused = append(refused, err)
				default:
					cut++
				}
				mu.Unlock()
			}
		})
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for r := range 5 {
		before := ackedCount()
		waitFor(t, 30*time.Second, "20 more acknowledgements", func() bool { return ackedCount() >= before+20 })
		down.Store(true) // from SIGTERM on, a new connection waits for the next relayq
		if code := d.stop(); code != 0 {
			t.Errorf("restart %d: relayq exited %d after SIGTERM", r, code)
		}
		// Downtime, as between systemd's stop and start: clients keep
		// connecting and wait in the backlog.
		time.Sleep(300 * time.Millisecond)
		down.Store(false)
		d.start()
	}
	before := ackedCount()
	waitFor(t, 30*time.Second, "acknowledgements after the last restart", func() bool { return ackedCount() >= before+20 })
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d acknowledged, %d of them connected while relayq was stopping or down; %d cut before DATA by a stopping relayq", len(acked), waited.Load(), cut)
	for _, err := range refused {
		t.Errorf("connection refused: %v", err)
	}
	if waited.Load() == 0 {
		t.Error("no submission made while relayq was down was acknowledged: nothing waited in the backlog")
	}
	checkAllDelivered(t, relay, acked, nil, 60*time.Second)
	d.waitQueueEmpty(t, 30*time.Second)
	if _, err := os.Stat(d.submitSocket()); err != nil {
		t.Errorf("the activated socket is gone after the restarts: %v", err)
	}
	if !strings.Contains(d.log.String(), "socket_activated=true") {
		t.Error("relayq did not log that its sockets were activated")
	}
}

// notifications listens where relayq's sd_notify goes (NOTIFY_SOCKET) and
// returns the messages, one state per line, as they come.
func notifications(t *testing.T, d *daemon) <-chan string {
	t.Helper()
	path := filepath.Join(d.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	out := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(out)
				return
			}
			out <- string(buf[:n])
		}
	}()
	d.env = append(d.env, "NOTIFY_SOCKET="+path)
	return out
}

// next returns the next notification that is not a watchdog ping.
func nextState(t *testing.T, ch <-chan string, pings *int) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case msg, ok := <-ch:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if msg == "WATCHDOG=1" {
				*pings++
				continue
			}
			return msg
		case <-timeout:
			t.Fatal("no notification in 20s")
		}
	}
}

// TestSystemdNotify: relayq under Type=notify (NOTIFY_SOCKET) with
// WatchdogSec= (WATCHDOG_USEC). READY=1 comes only once the queue is open
// and intake answers; watchdog pings follow while it runs; a reload
// (SIGHUP) is wrapped in RELOADING=1 … READY=1; STOPPING=1 comes at
// SIGTERM.
func TestSystemdNotify(t *testing.T) {
	d := newDaemon(t, nil)
	ch := notifications(t, d)
	d.env = append(d.env, "WATCHDOG_USEC=200000")
	d.mu.Lock()
	d.proc = d.spawn()
	d.mu.Unlock()
	pings := 0
	if got := nextState(t, ch, &pings); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// At READY the queue is open (status answers from it) and the socket
	// greets: nothing of this may be retried.
	if res := d.relayq("status"); res.code != 0 {
		t.Errorf("relayq status right after READY=1: %v", res)
	}
	if _, err := submitSMTP("unix", d.submitSocket(), "a@example.org", []string{"b@example.net"}, newMessage(1, "a@example.org", []string{"b@example.net"}, 1)); err != nil {
		t.Errorf("submission right after READY=1: %v", err)
	}

	waitFor(t, 10*time.Second, "watchdog pings", func() bool {
		for {
			select {
			case msg := <-ch:
				if msg != "WATCHDOG=1" {
					t.Errorf("unexpected notification %q", msg)
				}
				pings++
			default:
				return pings >= 3
			}
		}
	})

	d.running().cmd.Process.Signal(syscall.SIGHUP)
	if got := nextState(t, ch, &pings); got != "RELOADING=1" {
		t.Errorf("at reload %q, want RELOADING=1", got)
	}
	if got := nextState(t, ch, &pings); got != "READY=1" {
		t.Errorf("after reload %q, want READY=1", got)
	}
	p := d.running()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if got := nextState(t, ch, &pings); got != "STOPPING=1" {
		t.Errorf("at SIGTERM %q, want STOPPING=1", got)
	}
	if code := d.stop(); code != 0 {
		t.Errorf("relayq exited %d", code)
	}
	if !strings.Contains(d.log.String(), "systemd watchdog on") {
		t.Error("no log line says the watchdog is on")
	}
}

// TestSystemdUnits: the units in systemd/ pass `systemd-analyze verify`
// (with ExecStart= pointing at the binary under test, as the package
// installs it) and the service's exposure in `systemd-analyze security` is
// 2.0 or lower (issue 13). systemd-analyze comes with the systemd package,
// which tests/run.sh installs: missing, the test fails there and is skipped
// elsewhere.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv(realPeersEnv) != "" {
			t.Fatalf("systemd-analyze not installed (package systemd), and %s is set", realPeersEnv)
		}
		t.Skip("systemd-analyze not installed (package systemd)")
	}
	dir := t.TempDir()
	for _, name := range []string{"relayq.service", "relayq.socket"} {
		b, err := os.ReadFile(filepath.Join("..", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		unit := strings.ReplaceAll(string(b), "/usr/local/bin/relayq", relayqBin)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	service, socket := filepath.Join(dir, "relayq.service"), filepath.Join(dir, "relayq.socket")
	// --man=no: the man page (Documentation=man:relayq(8)) comes with the
	// Debian package, not installed here.
	if out, err := exec.Command(analyze, "verify", "--man=no", service, socket).CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// --threshold is the exposure times ten: 20 is 2.0.
	out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", service).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure over 2.0 (%v)\n%s", err, out)
	}
	t.Log(lastLine(string(out)))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestSocketActivationMismatch: a socket passed in that is neither the
// [submission] socket nor one of [submission] listen (a .socket unit and a
// config that disagree) stops relayq at start with exit 78 naming both,
// instead of leaving mail to wait for ever in a socket nobody serves.
func TestSocketActivationMismatch(t *testing.T) {
	d := newDaemon(t, nil)
	other := filepath.Join(d.dir, "other.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: other, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d.activated, d.activatedNames = []*os.File{f}, []string{"submit"}
	p := d.spawn()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Fatal("relayq serve did not exit")
	}
	if code := p.exitCode(); code != 78 {
		t.Errorf("exit %d, want 78", code)
	}
	if log := d.log.String(); !strings.Contains(log, other) || !strings.Contains(log, "neither [submission] socket") {
		t.Errorf("no error naming the socket:\n%s", log)
	}
}
