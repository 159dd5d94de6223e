package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"relayq/control"
	"relayq/queue"
)

// opsSetup is a queue answered on a control socket, as the daemon does, and
// a config file naming that socket, so the commands run in-process.
type opsSetup struct {
	q      *queue.Queue
	config string
	logs   *bytes.Buffer
}

func newOpsSetup(t *testing.T, extra string) opsSetup {
	t.Helper()
	dir, err := os.MkdirTemp("", "rqops") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	logs := &bytes.Buffer{}
	srv, err := control.ListenWith(control.Options{Socket: filepath.Join(dir, "control.sock"), MailqSocket: filepath.Join(dir, "mailq.sock"),
		Queue: q, Logger: slog.New(slog.NewTextHandler(logs, nil)), AdminGID: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	config := filepath.Join(dir, "relayq.toml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf("state_dir = %q\n%s", dir, extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	return opsSetup{q: q, config: config, logs: logs}
}

func (s opsSetup) put(t *testing.T, rcpts ...string) string {
	t.Helper()
	id, err := s.q.Put(t.Context(), queue.Envelope{From: "a@x.org", Recipients: rcpts}, []byte("Subject: t\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// relayq runs a command in-process with -c pointing at the setup.
func (s opsSetup) relayq(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	env := cmdEnv{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code = run(append(append([]string{"relayq"}, args...), "-c", s.config), env)
	return code, out.String(), errb.String()
}

// opsStep is a command, its exit code and text expected in stdout (or
// stderr when the code is not 0).
type opsStep struct {
	args []string
	code int
	out  string
}

// steps runs each step's command in order and checks its outcome.
func (s opsSetup) steps(t *testing.T, steps []opsStep) {
	t.Helper()
	for _, st := range steps {
		code, out, errOut := s.relayq(st.args...)
		text := out
		if st.code != exitOK {
			text = errOut
		}
		if code != st.code || !strings.Contains(text, st.out) {
			t.Errorf("relayq %s: exit %d, want %d with %q in\nstdout: %s\nstderr: %s", strings.Join(st.args, " "), code, st.code, st.out, out, errOut)
		}
	}
}

// TestOpsExitCodes: what each command prints and returns, including the
// documented exit codes for an unknown ID, a leased message and bad usage.
func TestOpsExitCodes(t *testing.T) {
	s := newOpsSetup(t, "")
	a, b := s.put(t, "a@y.org"), s.put(t, "b@y.org")
	unknown := "0000000000000ABCDEFG"
	steps := []opsStep{
		{[]string{"queue", "hold", a, "--json"}, exitOK, `"id": "` + a + `"`},
		{[]string{"queue", "list", "--state", "held"}, exitOK, a + "  held"},
		{[]string{"queue", "retry", a}, exitTempFail, "on hold; release it first"},
		{[]string{"queue", "release", a, unknown}, exitNoInput, unknown + ": no such message"},
		{[]string{"queue", "show", a}, exitOK, "State:        queued"},
		{[]string{"queue", "show", unknown}, exitNoInput, "no such message"},
		{[]string{"queue", "show", a, "--body"}, exitOK, "----- message -----\nSubject: t\r\n\r\nhello\r\n"},
		{[]string{"queue", "hold", "not-an-id"}, exitUsage, `"not-an-id" is not a queue ID`},
		{[]string{"queue", "hold"}, exitUsage, "which messages?"},
		{[]string{"queue", "retry", "--all", a}, exitUsage, "not both"},
		{[]string{"queue", "list", "--state", "sleeping"}, exitUsage, "unknown state"},
		{[]string{"queue", "frobnicate"}, exitUsage, `unknown operation "frobnicate"`},
		{[]string{"dead", "requeue", "--reply-class", "9.9.9"}, exitUsage, "bad reply class"},
		{[]string{"queue", "--help"}, exitOK, "release  release held messages"},
		{[]string{"queue", "hold", "--help"}, exitOK, "usage: relayq queue hold"},
		{[]string{"flush"}, exitOK, "2 message(s) due now"},
		{[]string{"queue", "expire", b}, exitOK, b + ": expired"},
		{[]string{"dead", "list", "--json"}, exitOK, "expired by operator"},
		{[]string{"dead", "show", b}, exitOK, "Dead letter:  died"},
		{[]string{"dead", "requeue", "--all"}, exitOK, b + ": requeued"},
		{[]string{"queue", "delete", b}, exitOK, b + ": deleted"},
		{[]string{"dead", "purge", "--older-than", "1h"}, exitOK, "0 dead letter(s) purged"},
		{[]string{"status"}, exitOK, "Health:       ok"},
	}
	s.steps(t, steps)
	if !strings.Contains(s.logs.String(), `op="queue delete"`) || !strings.Contains(s.logs.String(), "ids=["+b+"]") {
		t.Errorf("the deletion is not logged:\n%s", s.logs)
	}

	// A message a worker holds is left alone, with 75.
	ls, err := s.q.Lease(1)
	if err != nil || len(ls) != 1 {
		t.Fatalf("lease: %v %v", ls, err)
	}
	if code, _, errOut := s.relayq("queue", "delete", ls[0].ID); code != exitTempFail || !strings.Contains(errOut, "being delivered right now") {
		t.Errorf("delete of a leased message: exit %d, %s", code, errOut)
	}
	if _, err := s.q.Get(ls[0].ID); err != nil {
		t.Errorf("the leased message was deleted: %v", err)
	}
}

func TestStatusHealth(t *testing.T) {
	s := newOpsSetup(t, "[health]\nmax_dead = 1\n")
	for range 2 {
		id := s.put(t, "x@y.org")
		if code, _, errOut := s.relayq("queue", "expire", id); code != exitOK {
			t.Fatalf("expire: %d %s", code, errOut)
		}
	}
	code, out, _ := s.relayq("status", "--json")
	var st statusOut
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if code != exitUnhealthy || st.Healthy || st.DeadLastDay != 2 || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "health.max_dead") {
		t.Fatalf("status exit %d: %+v", code, st)
	}
}

func TestOpsWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "relayq.toml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf("state_dir = %q\n", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"queue", "hold", "0000000000000ABCDEFG"}, {"dead", "list"}, {"flush"}} {
		env := cmdEnv{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
		if code := run(append(append([]string{"relayq"}, args...), "-c", config), env); code != exitUnavailable {
			t.Errorf("relayq %v without a daemon: exit %d, want %d", args, code, exitUnavailable)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "queue.db")); err == nil {
		t.Error("a command opened the database")
	}
}

// TestOpsRefuseWhatTheyCannotDo: `dead purge` with no argument deletes
// nothing (it used to delete every dead letter without asking) and wants
// --all, as Postfix's postsuper -d wants ALL; `dead show` of a message that
// is queued, not dead, says so (it used to show the queued message as if
// it were a dead letter); `queue release` of a message that is not held
// says so and exits 65 (it used to print "released").
func TestOpsRefuseWhatTheyCannotDo(t *testing.T) {
	s := newOpsSetup(t, "")
	queued, dead := s.put(t, "a@y.org"), s.put(t, "b@y.org")
	if code, _, errOut := s.relayq("queue", "expire", dead); code != exitOK {
		t.Fatalf("expire: %d %s", code, errOut)
	}
	steps := []opsStep{
		{[]string{"dead", "purge"}, exitUsage, "which dead letters? give their IDs, --all or --older-than"},
		{[]string{"dead", "list"}, exitOK, dead},
		{[]string{"dead", "show", queued}, exitNoInput, queued + " is in the queue, not a dead letter"},
		{[]string{"queue", "release", queued}, exitDataErr, queued + ": not on hold; nothing to release"},
		{[]string{"queue", "hold", queued}, exitOK, queued + ": held"},
		{[]string{"queue", "release", queued}, exitOK, queued + ": released"},
		{[]string{"dead", "purge", "--all", dead}, exitUsage, "not both"},
		{[]string{"dead", "purge", "--all"}, exitOK, "1 dead letter(s) purged"},
		{[]string{"dead", "list"}, exitOK, "No dead letters."},
	}
	s.steps(t, steps)
}
