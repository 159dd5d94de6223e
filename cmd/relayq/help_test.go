package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every subcommand answers --help with its usage once, on stdout, exit 0,
// and is listed in `relayq --help`.
func TestEveryCommandHasHelp(t *testing.T) {
	var top bytes.Buffer
	if code := run([]string{"relayq", "--help"}, cmdEnv{Stdout: &top, Stderr: &top}); code != exitOK {
		t.Fatalf("relayq --help: exit %d", code)
	}
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(top.String(), "\n  "+name+" ") {
				t.Errorf("relayq --help does not list %q:\n%s", name, top.String())
			}
			var stdout, stderr bytes.Buffer
			env := cmdEnv{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			if code := run([]string{"relayq", name, "--help"}, env); code != exitOK {
				t.Fatalf("exit %d, want 0; stderr: %s", code, stderr.String())
			}
			if n := strings.Count(stdout.String(), "usage:"); n != 1 {
				t.Errorf("stdout holds the usage %d times, want once:\n%s", n, stdout.String())
			}
			if stderr.Len() != 0 {
				t.Errorf("--help wrote to stderr:\n%s", stderr.String())
			}
		})
	}
}

// TestGlobalOptions: `relayq --version` prints the version (it was an
// unknown command, exit 64); `relayq help queue` is `relayq queue --help`
// (it printed the top-level usage); `relayq -c FILE queue list` reads FILE
// as `relayq queue list -c FILE` does (it was an unknown command "-c"),
// and a -c after the command wins.
func TestGlobalOptions(t *testing.T) {
	s := newOpsSetup(t, "")
	id := s.put(t, "a@y.org")
	call := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		env := cmdEnv{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
		return run(append([]string{"relayq"}, args...), env), stdout.String(), stderr.String()
	}
	if code, out, errOut := call("--version"); code != exitOK || !strings.HasPrefix(out, "relayq ") || !strings.Contains(out, "(go1.") {
		t.Errorf("relayq --version: exit %d, stdout %q, stderr %q; want 0 and \"relayq VERSION (goN)\"", code, out, errOut)
	}
	_, want, _ := call("queue", "--help")
	if code, out, _ := call("help", "queue"); code != exitOK || out != want {
		t.Errorf("relayq help queue: exit %d\n%s\nwant 0 and relayq queue --help's text:\n%s", code, out, want)
	}
	if code, _, errOut := call("help", "nosuch"); code != exitUsage || !strings.Contains(errOut, `unknown command "nosuch"`) {
		t.Errorf("relayq help nosuch: exit %d, %s", code, errOut)
	}
	for _, args := range [][]string{
		{"-c", s.config, "queue", "list"},
		{"-c=" + s.config, "queue", "list"},
		{"-c", "/nonexistent/relayq.toml", "queue", "list", "-c", s.config},
	} {
		if code, out, errOut := call(args...); code != exitOK || !strings.Contains(out, id) {
			t.Errorf("relayq %s: exit %d, stdout %q, stderr %q; want the queue listing", strings.Join(args, " "), code, out, errOut)
		}
	}
	if code, _, errOut := call("-c", "/nonexistent/relayq.toml", "queue", "list"); code != exitConfig || !strings.Contains(errOut, "/nonexistent/relayq.toml") {
		t.Errorf("relayq -c MISSING queue list: exit %d, %s; want 78 naming the file", code, errOut)
	}
}
