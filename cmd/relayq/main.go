// Command relayq is a durable, queue-backed mail delivery daemon: it takes
// mail from local programs (SMTP on a Unix socket, a sendmail-compatible
// command, an optional loopback listener), keeps it in a bbolt queue, and
// delivers it to one upstream relay with retries and dead letters.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// cmdEnv is what a subcommand may touch of the outside world, so tests can
// run subcommands in-process.
type cmdEnv struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

type command struct {
	run     func(args []string, env cmdEnv) int
	summary string
}

var commands = map[string]command{
	"serve":    {runServe, "run the daemon"},
	"sendmail": {runSendmail, "submit one message from standard input (sendmail-compatible)"},
	"queue":    {runQueue, "queued messages: list, show, retry, hold, release, delete, expire"},
	"dead":     {runDead, "dead letters: list, show, requeue, purge"},
	"flush":    {runFlush, "make every queued message due now (queue retry --all)"},
	"status":   {runStatus, "the queue at a glance; exits 1 when a [health] limit is exceeded"},
	"verify":   {runVerify, "connect to the relay as delivery would and report (verify [--json] [--from A --to B])"},
	"mailq":    {runMailq, "the queue in Postfix's mailq format (also: mailq, sendmail -bp)"},
	"compact":  {runCompact, "rewrite the queue file without its free space (daemon stopped)"},
}

func main() {
	env := cmdEnv{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	os.Exit(run(os.Args, env))
}

func run(argv []string, env cmdEnv) int {
	// Installed as /usr/sbin/sendmail (a symlink), behave as sendmail.
	if filepath.Base(argv[0]) == "sendmail" {
		return runSendmail(argv[1:], env)
	}
	// Installed as mailq, list the queue the way Postfix's mailq does.
	if filepath.Base(argv[0]) == "mailq" {
		return runMailq(argv[1:], env)
	}
	// Installed as newaliases (Debian's maintainer scripts call it).
	if filepath.Base(argv[0]) == "newaliases" {
		return runNewaliases(argv[1:], env)
	}
	if len(argv) < 2 {
		usage(env.Stderr)
		return exitUsage
	}
	switch argv[1] {
	case "-h", "--help", "help":
		usage(env.Stdout)
		return exitOK
	}
	cmd, ok := commands[argv[1]]
	if !ok {
		fmt.Fprintf(env.Stderr, "relayq: unknown command %q\n", argv[1])
		usage(env.Stderr)
		return exitUsage
	}
	return cmd.run(argv[2:], env)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: relayq COMMAND [-c FILE] [ARGS]")
	for _, name := range []string{"serve", "sendmail", "queue", "dead", "flush", "status", "verify", "mailq", "compact"} {
		fmt.Fprintf(w, "  %-9s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "Every command takes -c FILE (else $RELAYQ_CONFIG, else /etc/relayq/config.toml, else the built-in default) and --help.")
}
