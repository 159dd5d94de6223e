package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"relayq/cmd/internal/sendmail"
	"relayq/queue"
	"relayq/spool"
)

// sendmailSetup is a config file and the places it names: a socket (in a
// short directory, for the 108-byte limit) and a maildrop.
type sendmailSetup struct {
	config, socket, maildrop string
}

func newSendmailSetup(t *testing.T, extra string) sendmailSetup {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "relayq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	state := t.TempDir()
	s := sendmailSetup{
		config:   filepath.Join(state, "config.toml"),
		socket:   filepath.Join(sockDir, "submit.sock"),
		maildrop: filepath.Join(state, "maildrop"),
	}
	s.write(t, extra)
	return s
}

// write (re)writes the config file from s, with extra [submission] keys.
func (s sendmailSetup) write(t *testing.T, extra string) {
	t.Helper()
	toml := fmt.Sprintf("state_dir = %q\n[submission]\nsocket = %q\nmaildrop = %q\nhostname = \"host.test\"\n%s",
		filepath.Dir(s.config), s.socket, s.maildrop, extra)
	if err := os.WriteFile(s.config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startIntake runs the daemon's side: a queue and a spool.Server on the
// setup's socket.
func (s sendmailSetup) startIntake(t *testing.T, qopts queue.Options, opts spool.Options) *queue.Queue {
	t.Helper()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), qopts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Queue, opts.Socket, opts.SocketGID = q, s.socket, -1
	srv := spool.NewServer(opts)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		for _, p := range q.Check() {
			t.Errorf("queue integrity: %v", p)
		}
		q.Close()
	})
	return q
}

type sendmailResult struct {
	code           int
	stdout, stderr string
}

func runSendmailTest(stdin string, args ...string) sendmailResult {
	var out, errb bytes.Buffer
	env := cmdEnv{
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(string) string { return "" },
	}
	code := runSendmail(args, env)
	return sendmailResult{code, out.String(), errb.String()}
}

func TestSendmailSubmits(t *testing.T) {
	s := newSendmailSetup(t, "")
	q := s.startIntake(t, queue.Options{}, spool.Options{})
	res := runSendmailTest("To: a@example.com\nSubject: hi\n\nhello\n.\nnot part of it\n",
		"-c", s.config, "-v", "-f", "backup", "-F", "Backup Job", "a@example.com", "root")
	if res.code != exitOK {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	id, ok := strings.CutPrefix(strings.TrimSpace(res.stdout), "queued as ")
	if !ok {
		t.Fatalf("-v printed %q", res.stdout)
	}
	m, err := q.Get(id)
	if err != nil {
		t.Fatalf("queue ID %q not in the queue: %v", id, err)
	}
	if m.From != "backup@host.test" || !reflect.DeepEqual(recipientAddrs(m), []string{"a@example.com", "root@host.test"}) {
		t.Errorf("envelope %q → %q", m.From, recipientAddrs(m))
	}
	if m.Submitter.UID != os.Getuid() || m.Submitter.Via != "socket" {
		t.Errorf("submitter %+v", m.Submitter)
	}
	body, _ := io.ReadAll(q.Body(id))
	header, text, _ := strings.Cut(string(body), "\r\n\r\n")
	if text != "hello\r\n" {
		t.Errorf("text %q, want the input up to the dot line, with CRLF", text)
	}
	for _, want := range []string{"To: a@example.com\r\n", "Subject: hi\r\n", "Date: ", "Message-ID: <", `From: "Backup Job" <backup@host.test>`} {
		if !strings.Contains(header, want) {
			t.Errorf("header lacks %q:\n%s", want, header)
		}
	}
}

// Installed as /usr/sbin/sendmail, relayq is sendmail.
func TestSendmailAsArgv0(t *testing.T) {
	s := newSendmailSetup(t, "")
	q := s.startIntake(t, queue.Options{}, spool.Options{})
	env := cmdEnv{Stdin: strings.NewReader("Subject: x\n\n"), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	if code := run([]string{"/usr/sbin/sendmail", "-c", s.config, "-t", "-i", "--", "a@example.com"}, env); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if c, _ := q.Count(); c.Messages != 1 {
		t.Fatalf("%d messages queued, want 1", c.Messages)
	}
}

// With the daemon down, the message goes to the maildrop, and the daemon
// imports it from there.
func TestSendmailMaildrop(t *testing.T) {
	s := newSendmailSetup(t, "")
	if err := spool.EnsureMaildrop(s.maildrop); err != nil {
		t.Fatal(err)
	}
	res := runSendmailTest("Subject: while down\n\nbody\n", "-c", s.config, "-i", "a@example.com")
	if res.code != exitOK || res.stderr != "" || res.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and silence", res.code, res.stdout, res.stderr)
	}
	files, _ := os.ReadDir(s.maildrop)
	if len(files) != 1 {
		t.Fatalf("maildrop holds %d files, want 1", len(files))
	}
	q := s.startIntake(t, queue.Options{}, spool.Options{})
	if n, err := (&spool.Maildrop{Dir: s.maildrop, Queue: q}).Import(context.Background()); n != 1 || err != nil {
		t.Fatalf("import: %d, %v", n, err)
	}
	msgs, _ := q.List()
	if len(msgs) != 1 || msgs[0].Submitter.Via != "maildrop" || msgs[0].From != sendmail.LoginName(sendmail.Env{Getenv: os.Getenv})+"@host.test" {
		t.Fatalf("queued %+v", msgs)
	}
}

// With the daemon down and less than queue.min_free free, sendmail does not
// write to the maildrop: it exits 75 (try later), as intake answers 452.
func TestSendmailMaildropKeepsMinFree(t *testing.T) {
	s := newSendmailSetup(t, "")
	if err := spool.EnsureMaildrop(s.maildrop); err != nil {
		t.Fatal(err)
	}
	free, err := queue.FreeSpace(s.maildrop)
	if err != nil {
		t.Fatal(err)
	}
	s.write(t, fmt.Sprintf("[queue]\nmin_free = %d\n", free+1<<30))
	res := runSendmailTest("Subject: disk full\n\nbody\n", "-c", s.config, "-i", "a@example.com")
	if res.code != exitTempFail || !strings.Contains(res.stderr, "min_free") {
		t.Fatalf("exit %d, stderr %q; want 75 and why", res.code, res.stderr)
	}
	if files, _ := os.ReadDir(s.maildrop); len(files) != 0 {
		t.Fatalf("maildrop holds %d files, want none", len(files))
	}
}

func TestSendmailNowhereToGo(t *testing.T) {
	// No daemon, and the maildrop's parent is a file.
	s := newSendmailSetup(t, "")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.maildrop = filepath.Join(file, "maildrop")
	s.write(t, "")

	res := runSendmailTest("Subject: x\n\n", "-c", s.config, "a@example.com")
	if res.code != exitTempFail {
		t.Fatalf("exit %d, want %d (EX_TEMPFAIL); stderr %q", res.code, exitTempFail, res.stderr)
	}
	if !strings.Contains(res.stderr, "nothing was sent") {
		t.Errorf("stderr %q does not say the message was not sent", res.stderr)
	}
}

func recipientAddrs(m *queue.Message) []string {
	var out []string
	for _, r := range m.Recipients {
		out = append(out, r.Address)
	}
	return out
}

// Exit codes for what the user gets wrong, and for what the daemon says.
func TestSendmailExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		extra  string        // config
		qopts  queue.Options // the daemon's queue
		opts   spool.Options // the daemon's intake
		stdin  string
		args   []string
		code   int
		stderr string
	}{
		{name: "help", args: []string{"--help"}, code: exitOK},
		{name: "no recipients", stdin: "Subject: x\n\n", code: exitUsage, stderr: "no recipients"},
		{name: "unknown option", args: []string{"-Z", "a@example.com"}, code: exitUsage, stderr: "unknown option -Z"},
		{name: "log file option", args: []string{"-X", "/tmp/log", "a@example.com"}, code: exitUsage, stderr: "-X is not supported"},
		{name: "config option", args: []string{"-C/etc/mail/sendmail.cf", "a@example.com"}, code: exitUsage},
		{name: "queue run for a site", args: []string{"-qRexample.com"}, code: exitUsage, stderr: "-qRexample.com is not supported"},
		{name: "daemon mode", args: []string{"-bd"}, code: exitUsage, stderr: "-bd is not supported"},
		{name: "missing argument", args: []string{"-f"}, code: exitUsage, stderr: "needs an argument"},
		{name: "ignored options", stdin: "x\n", args: []string{"-odi", "-oem", "-oQ/tmp", "-O", "X=y", "-bm", "-U", "-N", "never", "a@example.com"}, code: exitOK},
		{name: "bad recipient", args: []string{"a@example.com> SIZE=1"}, code: exitNoUser},
		{name: "header injection", args: []string{"-F", "Name\nBcc: z@example.net", "a@example.com"}, code: exitNoUser},
		{name: "NUL", stdin: "a\x00b\n", args: []string{"a@example.com"}, code: exitDataErr, stderr: "NUL"},
		{name: "too large", extra: "max_message_size = 100\n", stdin: strings.Repeat("x", 200), args: []string{"a@example.com"}, code: exitDataErr},
		{name: "daemon refuses the size", opts: spool.Options{MaxMessageSize: 10}, stdin: strings.Repeat("x", 200), args: []string{"a@example.com"}, code: exitDataErr, stderr: "552"},
		{name: "daemon's queue full", qopts: queue.Options{MaxSize: 1 << 20}, stdin: strings.Repeat("0123456789abcdef\n", 2<<20/17), args: []string{"a@example.com"}, code: exitTempFail, stderr: "452"},
		{name: "bad config", extra: "no_such_key = 1\n", args: []string{"a@example.com"}, code: exitConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSendmailSetup(t, tt.extra)
			if tt.extra == "" || !strings.Contains(tt.extra, "no_such_key") {
				s.startIntake(t, tt.qopts, tt.opts)
			}
			res := runSendmailTest(tt.stdin, append([]string{"-c", s.config}, tt.args...)...)
			if res.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", res.code, tt.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.stderr) {
				t.Errorf("stderr %q, want it to mention %q", res.stderr, tt.stderr)
			}
			if res.code != exitOK && !strings.HasPrefix(res.stderr, "sendmail: ") && tt.code != exitConfig {
				t.Errorf("stderr %q does not start with \"sendmail: \"", res.stderr)
			}
		})
	}
}
