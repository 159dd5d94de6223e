package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"relayq/queue"
	"relayq/spool"
)

// postfixRec encodes one queue file record as Postfix's rec_put does.
func postfixRec(typ byte, data string) []byte {
	b := []byte{typ}
	n := len(data)
	for {
		c := byte(n & 0x7f)
		if n >>= 7; n != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			break
		}
	}
	return append(b, data...)
}

// postfixQueueFile is a deferred queue file: one recipient delivered
// ('D'), one to go, one more reached through a pointer record (as
// cleanup appends them), a content line long enough for a 2-byte length
// and split over an 'L' record.
func postfixQueueFile() []byte {
	long := strings.Repeat("x", 200)
	var f bytes.Buffer
	f.Write(postfixRec('C', "            321             190               2               0             321               0"))
	f.Write(postfixRec('T', "1765000000 0"))
	f.Write(postfixRec('A', "rewrite_context=local"))
	f.Write(postfixRec('S', "root@example.org"))
	f.Write(postfixRec('D', "done@example.net"))
	f.Write(postfixRec('R', "left@example.net"))
	ptrAt := f.Len()
	f.Write(postfixRec('p', fmt.Sprintf("%15d", 0))) // patched below
	back := f.Len()
	f.Write(postfixRec('M', ""))
	f.Write(postfixRec('N', "Subject: deferred"))
	f.Write(postfixRec('N', ""))
	f.Write(postfixRec('L', "a line "))
	f.Write(postfixRec('N', "continued "+long))
	f.Write(postfixRec('X', ""))
	f.Write(postfixRec('E', ""))
	appended := f.Len()
	f.Write(postfixRec('R', "appended@example.net"))
	f.Write(postfixRec('p', fmt.Sprintf("%15d", back)))
	data := f.Bytes()
	copy(data[ptrAt:], postfixRec('p', fmt.Sprintf("%15d", appended)))
	return data
}

func TestParsePostfixQueueFile(t *testing.T) {
	m, err := parsePostfixQueueFile(postfixQueueFile())
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: deferred\n\na line continued " + strings.Repeat("x", 200) + "\n"
	if m.sender != "root@example.org" || !reflect.DeepEqual(m.rcpts, []string{"left@example.net", "appended@example.net"}) || string(m.content) != want {
		t.Errorf("got sender %q, recipients %q, content %q", m.sender, m.rcpts, m.content)
	}
	full := postfixQueueFile()
	for _, cut := range []int{1, 10, len(full) - 20, len(full) - 2} {
		if _, err := parsePostfixQueueFile(full[:cut]); err == nil {
			t.Errorf("a file cut at %d of %d bytes parsed", cut, len(full))
		}
	}
	loop := append(postfixRec('S', "a@b"), postfixRec('p', "0")...)
	loop = append(loop, postfixRec('p', "3")...)
	if _, err := parsePostfixQueueFile(loop); err == nil {
		t.Error("a pointer loop parsed")
	}
}

// TestImportPostfixQueue: --queue --dry-run lists the messages and changes
// nothing; --queue submits each (here the daemon is up) and removes its
// queue file; a damaged file is reported and left.
func TestImportPostfixQueue(t *testing.T) {
	s := newSendmailSetup(t, "")
	q := s.startIntake(t, queue.Options{}, spool.Options{})
	spoolDir := t.TempDir()
	good := filepath.Join(spoolDir, "deferred", "A", "A1B2C3D4E5")
	bad := filepath.Join(spoolDir, "hold", "F00BA4")
	os.MkdirAll(filepath.Dir(good), 0o700)
	os.MkdirAll(filepath.Dir(bad), 0o700)
	os.WriteFile(good, postfixQueueFile(), 0o600)
	os.WriteFile(bad, postfixQueueFile()[:40], 0o600)
	call := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		env := cmdEnv{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
		code := run(append([]string{"relayq", "-c", s.config, "import-postfix", "--queue", "--queue-dir", spoolDir}, args...), env)
		return code, stdout.String(), stderr.String()
	}
	code, out, errOut := call("--dry-run")
	if code != exitDataErr || !strings.Contains(out, "A1B2C3D4E5: from <root@example.org> to left@example.net, appended@example.net") ||
		!strings.Contains(errOut, "F00BA4: no end record") {
		t.Errorf("--dry-run: exit %d\n%s\n%s", code, out, errOut)
	}
	if msgs, _ := q.List(); len(msgs) != 0 {
		t.Fatalf("--dry-run queued %d messages", len(msgs))
	}
	code, out, errOut = call()
	if code != exitDataErr || !strings.Contains(out, "submitted to relayq, removed from Postfix's queue") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(good); !os.IsNotExist(err) {
		t.Errorf("the submitted message's queue file is still there: %v", err)
	}
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("the damaged queue file was not left: %v", err)
	}
	msgs, _ := q.List()
	if len(msgs) != 1 {
		t.Fatalf("queue holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	body, _ := io.ReadAll(q.Body(m.ID))
	if m.From != "root@example.org" || !reflect.DeepEqual(recipientAddrs(m), []string{"left@example.net", "appended@example.net"}) ||
		!strings.Contains(string(body), "Subject: deferred\r\n") {
		t.Errorf("queued %q → %q:\n%s", m.From, recipientAddrs(m), body)
	}
}

// TestPostfixRunningIgnoresStalePID: Postfix leaves master.pid behind when
// it stops; a number that now belongs to another process (here: the test
// itself) is not a running Postfix, or import-postfix --queue would refuse
// for ever (seen in the package test, where the chroot shares the host's
// process IDs). A live process called master is.
func TestPostfixRunningIgnoresStalePID(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "pid"), 0o755)
	write := func(pid int) {
		if err := os.WriteFile(filepath.Join(dir, "pid", "master.pid"), []byte(fmt.Sprintf("%10d\n", pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(os.Getpid())
	if postfixRunning(dir) {
		t.Error("a master.pid naming another live process counts as Postfix running")
	}
	// comm is the executable's name: a copy of sleep named master.
	bin := filepath.Join(t.TempDir(), "master")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	master := exec.Command(bin, "30")
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { master.Process.Kill(); master.Wait() }()
	write(master.Process.Pid)
	if !postfixRunning(dir) {
		t.Error("a live Postfix master does not count as running")
	}
}
