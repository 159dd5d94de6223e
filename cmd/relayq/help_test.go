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
