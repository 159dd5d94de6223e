package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"relayq/config"
)

func generated(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	env := cmdEnv{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	if code := run(append([]string{"relayq", "help"}, args...), env); code != exitOK {
		t.Fatalf("relayq help %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// TestManPagesHoldEveryHelp: relayq(8) holds the --help text of every
// command (and of every queue and dead operation), relayq-sendmail(1) those
// of sendmail, mailq and newaliases, and both name the version, so the
// pages cannot drift from the binary.
func TestManPagesHoldEveryHelp(t *testing.T) {
	if len(commandOrder) != len(commands) {
		t.Errorf("commandOrder has %d commands, the command table %d", len(commandOrder), len(commands))
	}
	man8 := generated(t, "--man", "8")
	text8 := roffUnescape(man8)
	for name := range commands {
		if !strings.Contains(text8, helpText(name)) {
			t.Errorf("relayq(8) lacks relayq %s --help:\n%s", name, helpText(name))
		}
	}
	for _, name := range []string{"queue", "dead"} {
		ops := operations(name)
		if len(ops) < 4 {
			t.Errorf("relayq %s --help lists %d operations: %v", name, len(ops), ops)
		}
		for _, op := range ops {
			if h := helpText(name, op); !strings.Contains(h, "usage: relayq "+name+" "+op) || !strings.Contains(text8, h) {
				t.Errorf("relayq(8) lacks relayq %s %s --help:\n%s", name, op, h)
			}
		}
	}
	man1 := generated(t, "--man", "1")
	for _, name := range []string{"sendmail", "mailq", "newaliases"} {
		if !strings.Contains(roffUnescape(man1), helpText(name)) {
			t.Errorf("relayq-sendmail(1) lacks %s --help", name)
		}
	}
	for _, page := range []string{man8, man1, generated(t, "--man", "5")} {
		if !strings.Contains(roffUnescape(page), versionString()) {
			t.Errorf("page does not name %q:\n%.300s", versionString(), page)
		}
	}
}

// TestManConfigHoldsEveryKey: relayq.toml(5) has a section for every table
// of config.toml.example and a tagged paragraph for every key, set or
// commented out, with its comment.
func TestManConfigHoldsEveryKey(t *testing.T) {
	man5 := generated(t, "--man", "5")
	keys := 0
	for _, line := range strings.Split(string(config.Example()), "\n") {
		if strings.HasPrefix(line, "[") {
			if !strings.Contains(man5, ".SH "+line+"\n") {
				t.Errorf("relayq.toml(5) has no section %s", line)
			}
		}
		if m := configKeyLine().FindStringSubmatch(line); m != nil {
			keys++
			if !strings.Contains(roffUnescape(man5), ".TP\n"+m[1]+" = "+m[2]+"\n") {
				t.Errorf("relayq.toml(5) has no paragraph for %s", line)
			}
		}
	}
	if keys < 90 {
		t.Errorf("found %d keys in config.toml.example", keys)
	}
	if !strings.Contains(roffUnescape(man5), "The user name; for oauth2, the mailbox the token was issued for.") {
		t.Error("relayq.toml(5) lacks the comments")
	}
	if man, err := exec.LookPath("man"); err == nil {
		page := filepath.Join(t.TempDir(), "relayq.toml.5")
		writeFile(t, page, man5)
		out, err := exec.Command(man, "-l", "--warnings", page).CombinedOutput()
		if err != nil || strings.Contains(string(out), "warning:") {
			t.Errorf("man -l relayq.toml.5: %v\n%.2000s", err, out)
		}
	}
}

// TestBashCompletion: the completion offers every command, every queue and
// dead operation and the flags of each --help, and bash accepts it.
func TestBashCompletion(t *testing.T) {
	comp := generated(t, "--completion", "bash")
	for _, name := range commandOrder {
		if !strings.Contains(comp, "\n\t"+name+`\ *) words="`) && !strings.Contains(comp, "\n\t\""+name+" \") words=\"") {
			t.Errorf("no completion for %s", name)
		}
	}
	for _, want := range []string{`"queue show") words="--body --json -c"`, `"dead purge") words="--all --json --older-than -c"`,
		`import-postfix\ *) words="--dry-run --output --pass-file --postconf --queue --queue-dir"`, `"queue ") words="list status show`} {
		if !strings.Contains(comp, want) {
			t.Errorf("completion lacks %s", want)
		}
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		script := comp + `
COMP_WORDS=(relayq queue sh); COMP_CWORD=2; _relayq; echo "${COMPREPLY[*]}"
COMP_WORDS=(relayq -c /x import-postfix --d); COMP_CWORD=4; _relayq; echo "${COMPREPLY[*]}"
`
		out, err := exec.Command(bash, "-c", script).CombinedOutput()
		if err != nil || string(out) != "show\n--dry-run\n" {
			t.Errorf("bash: %v, completions %q, want show / --dry-run", err, out)
		}
	}
}
