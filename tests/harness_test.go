package tests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// The binaries under test, built once by TestMain: relayq, relayq-sendmail
// next to it, and a symlink to relayq-sendmail named sendmail, as the
// package installs it (/usr/sbin/sendmail). `relayq sendmail` is the same
// command; the tests that run it as another user (publicBin) use that.
var (
	relayqBin    string
	sendmailBin  string
	sendmailLink string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if sock := os.Getenv(holdEnv); sock != "" {
		return holdConnections(sock) // mailqcap_test.go: this binary as a hostile user
	}
	dir, err := os.MkdirTemp("", "relayq-bin")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tests: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	relayqBin = filepath.Join(dir, "relayq")
	sendmailBin = filepath.Join(dir, "relayq-sendmail")
	// relayq-sendmail without cgo, as packaging/build-deb.sh builds it
	// (cmd/relayq-sendmail/userdb.go).
	for _, b := range []struct{ pkg, cgo string }{{"relayq/cmd/relayq", ""}, {"relayq/cmd/relayq-sendmail", "CGO_ENABLED=0"}} {
		build := exec.Command("go", "build", "-o", dir+"/", b.pkg)
		build.Env = append(os.Environ(), b.cgo)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "tests: %s go build %s: %v\n", b.cgo, b.pkg, err)
			return 1
		}
	}
	sendmailLink = filepath.Join(dir, "sendmail")
	if err := os.Symlink(sendmailBin, sendmailLink); err != nil {
		fmt.Fprintf(os.Stderr, "tests: %v\n", err)
		return 1
	}
	return m.Run()
}

// settings is a relayq configuration file: section ("" for the top level,
// "relay.tls" for [relay.tls]) → key → value written as a TOML literal.
type settings map[string]map[string]string

// set puts key = value (a TOML literal: `"5s"`, `4`, `true`) in section.
func (s settings) set(section, key, value string) {
	if s[section] == nil {
		s[section] = map[string]string{}
	}
	s[section][key] = value
}

// del removes key from section, so relayq uses its default.
func (s settings) del(section, key string) { delete(s[section], key) }

func (s settings) render() string {
	var b strings.Builder
	sections := make([]string, 0, len(s))
	for sec := range s {
		sections = append(sections, sec)
	}
	slices.Sort(sections) // "" (top level) sorts first
	for _, sec := range sections {
		if sec == rawSection {
			continue
		}
		if sec != "" {
			fmt.Fprintf(&b, "\n[%s]\n", sec)
		}
		keys := make([]string, 0, len(s[sec]))
		for k := range s[sec] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s = %s\n", k, s[sec][k])
		}
	}
	// Arrays of tables ([[relays]], [[routes]]) go last, as written.
	keys := make([]string, 0, len(s[rawSection]))
	for k := range s[rawSection] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n%s\n", s[rawSection][k])
	}
	return b.String()
}

// rawSection holds TOML text written after every table, in key order:
// s.set(rawSection, "1", "[[relays]]\nid = \"b\"").
const rawSection = "~raw"

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string { return strconv.Quote(s) }

// relayURL is the [relay] url for a smtptest server.
func relayURL(relay *smtptest.Server, lmtp bool) string {
	scheme := "smtp"
	if lmtp {
		scheme = "lmtp"
	}
	return scheme + "://" + relay.Addr()
}

// daemon is one relayq state directory with its configuration, and the
// `relayq serve` process running on it (if any). Its stderr, across every
// run, is kept and printed when the test fails.
type daemon struct {
	t        testing.TB
	dir      string // state_dir
	config   string // the configuration file
	settings settings
	log      *daemonLog
	runs     int
	// activated are listening sockets handed to every run the way systemd
	// hands a .socket unit's (LISTEN_FDS, from fd 3), named in
	// activatedNames; env is added to every run's environment.
	activated      []*os.File
	activatedNames []string
	env            []string

	mu   sync.Mutex
	proc *process // the current run; nil when not running
}

// process is one run of `relayq serve`.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, once done is closed
}

func (p *process) exitCode() int { return p.cmd.ProcessState.ExitCode() }

// newDaemon writes a configuration for a relayq that delivers to relay (nil:
// to a port nobody listens on) with short retry intervals, after letting
// each edit change it. It does not start the daemon.
func newDaemon(t testing.TB, relay *smtptest.Server, edits ...func(settings)) *daemon {
	t.Helper()
	// t.TempDir() paths can exceed the 108 bytes of a socket path.
	dir, err := os.MkdirTemp("", "rq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &daemon{t: t, dir: dir, config: filepath.Join(dir, "relayq.toml"), log: newDaemonLog(t), settings: settings{}}
	s := d.settings
	s.set("", "state_dir", tomlString(dir))
	url := "smtp://127.0.0.1:9" // discard port: connection refused
	if relay != nil {
		url = relayURL(relay, false)
	}
	s.set("relay", "url", tomlString(url))
	s.set("relay", "connection_timeout", `"5s"`)
	s.set("relay", "greeting_timeout", `"5s"`)
	s.set("relay", "socket_timeout", `"10s"`)
	s.set("delivery", "workers", "4")
	s.set("delivery", "lease_timeout", `"30s"`)
	s.set("delivery", "shutdown_timeout", `"5s"`)
	s.set("retry", "initial_interval", `"100ms"`)
	s.set("retry", "multiplier", "2.0")
	s.set("retry", "max_interval", `"1s"`)
	s.set("retry", "max_lifetime", `"1h"`)
	s.set("log", "level", `"info"`)
	for _, edit := range edits {
		edit(s)
	}
	d.writeConfig()
	t.Cleanup(d.cleanup)
	return d
}

// startDaemon is newDaemon followed by start.
func startDaemon(t testing.TB, relay *smtptest.Server, edits ...func(settings)) *daemon {
	t.Helper()
	d := newDaemon(t, relay, edits...)
	d.start()
	return d
}

func (d *daemon) writeConfig() {
	d.t.Helper()
	if err := os.WriteFile(d.config, []byte(d.settings.render()), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

func (d *daemon) submitSocket() string  { return filepath.Join(d.dir, "submit.sock") }
func (d *daemon) controlSocket() string { return filepath.Join(d.dir, "control.sock") }
func (d *daemon) maildrop() string      { return filepath.Join(d.dir, "maildrop") }

// spawn starts `relayq serve -c CONFIG` without waiting for it to be ready.
// Its stderr goes to d.log.
func (d *daemon) spawn() *process {
	d.t.Helper()
	d.runs++
	fmt.Fprintf(d.log, "----- relayq serve, run %d -----\n", d.runs)
	cmd := exec.Command(relayqBin, "serve", "-c", d.config)
	cmd.Env = append(testEnv(), d.env...)
	if len(d.activated) > 0 {
		// LISTEN_PID must be relayq's own pid: sh sets it, then becomes
		// relayq.
		cmd = exec.Command("/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, relayqBin, "serve", "-c", d.config)
		cmd.ExtraFiles = d.activated
		cmd.Env = append(testEnv(), d.env...)
		cmd.Env = append(cmd.Env, fmt.Sprintf("LISTEN_FDS=%d", len(d.activated)), "LISTEN_FDNAMES="+strings.Join(d.activatedNames, ":"))
	}
	cmd.Stderr = d.log.file
	cmd.Stdout = d.log.file
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start relayq serve: %v", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// launch runs the daemon and returns at once, without waiting for its
// sockets (a start that is meant to stay in its starting window, or to be
// timed from the outside).
func (d *daemon) launch() *process {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		d.t.Fatal("daemon already running")
	}
	d.proc = d.spawn()
	return d.proc
}

// start runs the daemon and waits until both of its sockets answer.
func (d *daemon) start() {
	d.t.Helper()
	d.mu.Lock()
	if d.proc != nil {
		d.mu.Unlock()
		d.t.Fatal("daemon already running")
	}
	p := d.spawn()
	d.proc = p
	d.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.done:
			d.mu.Lock()
			d.proc = nil
			d.mu.Unlock()
			d.t.Fatalf("relayq serve exited during start-up (%v)", p.err)
		default:
		}
		if d.ready() {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("relayq serve not ready after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready reports whether the control socket accepts connections and the
// submission socket greets with 220.
func (d *daemon) ready() bool {
	c, err := net.DialTimeout("unix", d.controlSocket(), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	c, err = net.DialTimeout("unix", d.submitSocket(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220") {
		return false
	}
	fmt.Fprintf(c, "QUIT\r\n")
	// Wait for the daemon to close its side, so that this probe no longer
	// counts against the connection caps when the test begins.
	io.Copy(io.Discard, r)
	return true
}

// running returns the current process, or nil.
func (d *daemon) running() *process {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc
}

// stop sends SIGTERM and waits for the daemon to exit; it returns the exit
// status. A daemon still running after 30s fails the test (and is killed).
func (d *daemon) stop() int {
	d.t.Helper()
	return d.end(syscall.SIGTERM, 30*time.Second)
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	d.t.Helper()
	d.end(syscall.SIGKILL, 10*time.Second)
}

// restart is stop (which must exit 0) and start.
func (d *daemon) restart() {
	d.t.Helper()
	if code := d.stop(); code != 0 {
		d.t.Errorf("relayq serve exited %d after SIGTERM, want 0", code)
	}
	d.start()
}

func (d *daemon) end(sig syscall.Signal, timeout time.Duration) int {
	d.t.Helper()
	d.mu.Lock()
	p := d.proc
	d.proc = nil
	d.mu.Unlock()
	if p == nil {
		d.t.Fatal("daemon not running")
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		d.t.Errorf("relayq serve still running %v after %v; killed", timeout, sig)
	}
	return p.exitCode()
}

// cleanup stops a daemon still running (a graceful stop must exit 0) and
// prints its log if the test failed.
func (d *daemon) cleanup() {
	if d.running() != nil {
		if code := d.stop(); code != 0 {
			d.t.Errorf("relayq serve exited %d after SIGTERM at the end of the test, want 0", code)
		}
	}
	if d.t.Failed() && d.runs > 0 {
		d.t.Logf("relayq serve stderr (%s):\n%s", d.config, d.log)
	}
}

// testEnv is the environment for relayq processes: the test's own, without
// any $RELAYQ_CONFIG, so that only -c decides the configuration, and
// without systemd's variables (should the tests run in a unit), which only
// the tests of systemd_test.go set.
func testEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "RELAYQ_"), strings.HasPrefix(name, "LISTEN_"), strings.HasPrefix(name, "WATCHDOG_"), name == "NOTIFY_SOCKET":
		default:
			env = append(env, kv)
		}
	}
	return env
}

// daemonLog is where relayq serve's stderr and stdout go: a file the
// daemon writes itself (not a pipe copied by a goroutine), so a line it
// wrote before it answered on a socket is there for the test to read
// as soon as the answer is.
type daemonLog struct {
	file *os.File // opened O_APPEND, shared with each run of the daemon
}

// newDaemonLog makes it outside the daemon's state directory, which
// tests inspect.
func newDaemonLog(t testing.TB) *daemonLog {
	f, err := os.CreateTemp("", "relayq-log")
	if err == nil {
		f.Close()
		f, err = os.OpenFile(f.Name(), os.O_WRONLY|os.O_APPEND, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); os.Remove(f.Name()) })
	return &daemonLog{file: f}
}

func (l *daemonLog) Write(p []byte) (int, error) { return l.file.Write(p) }

// String is everything written so far.
func (l *daemonLog) String() string {
	data, err := os.ReadFile(l.file.Name())
	if err != nil {
		return fmt.Sprintf("(cannot read the daemon's log: %v)", err)
	}
	return string(data)
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// relayq cannot report the port of a ":0" listener, so the test picks one
// and accepts the small race.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// exitCode extracts the status of a finished command; -1 if it did not run.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
