package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"relayq/cmd/internal/sendmail"
	"relayq/cmd/internal/sysexits"
)

// execRelayq returns a sendmail mode that runs `relayq COMMAND ARGS` in
// this process's place (execve: same standard input and output, same
// environment, and relayq's exit code is the caller's), so that mailq,
// newaliases, sendmail -bp, -bi and -q behave as relayq's own.
func execRelayq(command string) func(args []string, env sendmail.Env) int {
	return func(args []string, env sendmail.Env) int {
		path, err := relayqPath()
		if err == nil {
			err = syscall.Exec(path, append([]string{"relayq", command}, args...), os.Environ())
		}
		fmt.Fprintf(env.Stderr, "%s: cannot run relayq %s: %v\n", filepath.Base(os.Args[0]), command, err)
		return sysexits.Unavailable
	}
}

// relayqPath is the relayq next to this binary (the two are installed in
// /usr/sbin together; os.Executable sees through the sendmail symlink),
// else the one in $PATH.
func relayqPath() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "relayq")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath("relayq")
	if err != nil {
		return "", errors.New("relayq is neither next to this program nor in $PATH")
	}
	return p, nil
}
