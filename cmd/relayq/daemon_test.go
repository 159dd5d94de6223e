package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/queue"
)

// startCase is one way relayq serve can fail to start: prepare breaks one
// step (and may hold something until the test ends); the daemon must exit
// with code and one "relayq serve:" (or, for the config, "relayq:") line
// containing want.
type startCase struct {
	name    string
	prepare func(t *testing.T, dir string, cfg *startConfig)
	code    int
	want    string
	// theirs names what the case itself holds ("listen", "queue.db",
	// "submit.sock", "control.sock"), which relayq must leave alone.
	theirs []string
}

// startConfig is what the cases may change in the config file.
type startConfig struct {
	queuePath, maildrop, extra string
	listen                     string // a loopback address for [submission] listen
}

func (c startConfig) render(dir string) string {
	s := fmt.Sprintf("state_dir = %q\n%s\n[relay]\nurl = \"smtp://127.0.0.1:9\"\n\n[submission]\nlisten = [%q]\n",
		dir, "", c.listen)
	if c.maildrop != "" {
		s += fmt.Sprintf("maildrop = %q\n", c.maildrop)
	}
	if c.queuePath != "" {
		s += fmt.Sprintf("\n[queue]\npath = %q\n", c.queuePath)
	}
	return s + c.extra
}

// TestStartupFailures makes each start-up step fail in turn (the state
// directory, the queue file, the configuration, the maildrop, the
// submission socket, the loopback listener, the control socket). Each
// failure must be a clean one-line error naming the cause with the
// sysexits code, never a panic, and whatever the steps before had started
// must be undone: the queue file's lock released, the sockets removed and
// the loopback port free again.
func TestStartupFailures(t *testing.T) {
	cases := []startCase{
		{"state directory unusable", func(t *testing.T, dir string, c *startConfig) {
			writeFile(t, filepath.Join(dir, "file"), "")
			c.queuePath = filepath.Join(dir, "file", "sub", "queue.db")
		}, exitCantCreate, "not a directory", nil},
		{"state directory read-only", func(t *testing.T, dir string, c *startConfig) {
			c.queuePath = filepath.Join(readOnlyFS(t, dir), "queue.db")
		}, exitCantCreate, "read-only file system", nil},
		{"queue file locked by another daemon", func(t *testing.T, dir string, c *startConfig) {
			q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
		}, exitTempFail, "another relayq serve running", []string{"queue.db"}},
		{"queue file unusable", func(t *testing.T, dir string, c *startConfig) {
			// A link to a directory that is not there (a volume not
			// mounted, say).
			if err := os.Symlink(filepath.Join(dir, "gone", "queue.db"), filepath.Join(dir, "queue.db")); err != nil {
				t.Fatal(err)
			}
		}, exitCantCreate, "no such file or directory", nil},
		{"queue file is a directory", func(t *testing.T, dir string, c *startConfig) {
			if err := os.Mkdir(filepath.Join(dir, "queue.db"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, exitCantCreate, "is a directory", nil},
		{"bad CA file", func(t *testing.T, dir string, c *startConfig) {
			writeFile(t, filepath.Join(dir, "ca.pem"), "not a certificate")
			c.extra = fmt.Sprintf("\n[relay.tls]\nca_file = %q\n", filepath.Join(dir, "ca.pem"))
		}, exitConfig, "relay.tls.ca_file", nil},
		{"maildrop unusable", func(t *testing.T, dir string, c *startConfig) {
			writeFile(t, filepath.Join(dir, "maildrop"), "")
		}, exitCantCreate, "maildrop", nil},
		{"submission socket held by another daemon", func(t *testing.T, dir string, c *startConfig) {
			holdSocket(t, filepath.Join(dir, "submit.sock"))
		}, exitTempFail, "another relayq is answering", []string{"submit.sock"}},
		{"listen address in use", func(t *testing.T, dir string, c *startConfig) {
			l, err := net.Listen("tcp", c.listen)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, exitOSErr, "address already in use", []string{"listen"}},
		{"control socket held by another daemon", func(t *testing.T, dir string, c *startConfig) {
			holdSocket(t, filepath.Join(dir, "control.sock"))
		}, exitTempFail, "another relayq serve is answering", []string{"control.sock"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// t.TempDir() paths can exceed the 108 bytes of a socket path.
			dir, err := os.MkdirTemp("", "rqs")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			c := startConfig{listen: freeAddr(t)}
			tc.prepare(t, dir, &c)
			cfgPath := filepath.Join(dir, "relayq.toml")
			writeFile(t, cfgPath, c.render(dir))

			var stdout, stderr bytes.Buffer
			code := runServe([]string{"-c", cfgPath}, cmdEnv{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
			out := stderr.String()
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, out)
			}
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Errorf("stderr has a stack trace:\n%s", out)
			}
			var errLines []string
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "relayq serve: ") || strings.HasPrefix(line, "relayq: ") {
					errLines = append(errLines, line)
				}
			}
			if len(errLines) != 1 || !strings.Contains(errLines[0], tc.want) {
				t.Errorf("error lines %q, want one naming %q; stderr:\n%s", errLines, tc.want, out)
			}
			checkUndone(t, dir, c, tc.theirs)
		})
	}
}

// checkUndone checks that a failed start left nothing held but what the
// case holds itself (theirs): the loopback address can be listened on, the
// sockets relayq made are gone and the queue file (when it is one) is not
// locked.
func checkUndone(t *testing.T, dir string, c startConfig, theirs []string) {
	t.Helper()
	if l, err := net.Listen("tcp", c.listen); err == nil {
		l.Close()
	} else if !slices.Contains(theirs, "listen") {
		t.Errorf("the loopback address is still held after the failed start: %v", err)
	}
	for _, name := range []string{"submit.sock", "control.sock"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil && !slices.Contains(theirs, name) {
			t.Errorf("%s was left behind by the failed start", name)
		}
	}
	path := filepath.Join(dir, "queue.db")
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() || slices.Contains(theirs, "queue.db") {
		return
	}
	q, err := queue.Open(path, queue.Options{LockTimeout: 100 * time.Millisecond})
	if errors.Is(err, queue.ErrLocked) {
		t.Errorf("the queue file is still locked after the failed start")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
}

// readOnlyFS mounts a read-only tmpfs in dir (as root: relayq's user
// would get EACCES where root gets EROFS) and returns its path.
func readOnlyFS(t *testing.T, dir string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a read-only file system needs root (tests/run.sh runs as root in CI)")
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro).CombinedOutput(); err != nil {
		t.Fatalf("mount a read-only tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", ro).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", ro, err, out)
		}
	})
	return ro
}

// holdSocket plays another live daemon answering on path.
func holdSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
