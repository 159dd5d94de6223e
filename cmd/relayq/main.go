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
	"strings"
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
	"serve":          {runServe, "run the daemon"},
	"reload":         {runReload, "make the daemon read its configuration again (as SIGHUP does)"},
	"sendmail":       {runSendmail, "submit one message from standard input (sendmail-compatible)"},
	"queue":          {runQueue, "queued messages: list, show, retry, hold, release, delete, expire"},
	"dead":           {runDead, "dead letters: list, show, requeue, purge"},
	"flush":          {runFlush, "make every queued message due now (queue retry --all)"},
	"status":         {runStatus, "the queue at a glance; exits 1 when a [health] limit is exceeded"},
	"verify":         {runVerify, "connect to the relay as delivery would and report (verify [--json] [--from A --to B])"},
	"mailq":          {runMailq, "the queue in Postfix's mailq format, for any user (also: mailq, sendmail -bp) [--json]"},
	"backup":         {runBackup, "write a checked copy of the queue file (backup PATH; the daemon running or not)"},
	"compact":        {runCompact, "rewrite the queue file without its free space (the daemon running or not)"},
	"rewrite":        {runRewrite, "show the envelope and header a message would be sent with (rewrite --dry-run -f SENDER RCPT... < message)"},
	"newaliases":     {runNewaliases, "check the [aliases] and aliases_file, errors by line (also: newaliases, sendmail -bi)"},
	"import-postfix": {runImportPostfix, "write a relayq config from Postfix's settings (postconf -n) [--dry-run]; --queue: submit the mail left in Postfix's queue"},
}

func main() {
	env := cmdEnv{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	os.Exit(run(os.Args, env))
}

func run(argv []string, env cmdEnv) int {
	// Called as sendmail, mailq or newaliases, act as that command. The
	// package links those names to relayq-sendmail, which runs relayq for
	// mailq and newaliases; a link to relayq, as older installs made, works
	// the same.
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
	args, env, code := globalOptions(argv[1:], env)
	if code != exitOK {
		return code
	}
	if len(args) == 0 {
		usage(env.Stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help":
		usage(env.Stdout)
		return exitOK
	case "help":
		// `relayq help --man 8` and `--completion bash`: see manpage.go.
		if code, ok := runHelpGenerated(args[1:], env); ok {
			return code
		}
		// `relayq help queue` is `relayq queue --help`.
		if len(args) > 1 {
			return runCommand(args[1], []string{"--help"}, env)
		}
		usage(env.Stdout)
		return exitOK
	case "--version", "version":
		fmt.Fprintln(env.Stdout, versionString())
		return exitOK
	}
	return runCommand(args[0], args[1:], env)
}

func runCommand(name string, args []string, env cmdEnv) int {
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(env.Stderr, "relayq: unknown command %q\n", name)
		usage(env.Stderr)
		return exitUsage
	}
	return cmd.run(args, env)
}

// globalOptions takes the options that may come before the command:
// -c FILE (or -c=FILE), which then stands for $RELAYQ_CONFIG, so that a
// -c after the command still wins, as a flag wins over the environment.
func globalOptions(args []string, env cmdEnv) ([]string, cmdEnv, int) {
	for len(args) > 0 {
		var path string
		switch a := args[0]; {
		case a == "-c" || a == "--c":
			if len(args) < 2 {
				fmt.Fprintln(env.Stderr, "relayq: -c needs a file")
				return nil, env, exitUsage
			}
			path, args = args[1], args[2:]
		case strings.HasPrefix(a, "-c="), strings.HasPrefix(a, "--c="):
			path, args = a[strings.IndexByte(a, '=')+1:], args[1:]
		default:
			return args, env, exitOK
		}
		getenv := env.Getenv
		env.Getenv = func(key string) string {
			if key == "RELAYQ_CONFIG" {
				return path
			}
			return getenv(key)
		}
	}
	return args, env, exitOK
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: relayq [-c FILE] COMMAND [ARGS]   (also: relayq help COMMAND, relayq --version)")
	for _, name := range commandOrder {
		fmt.Fprintf(w, "  %-14s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "Every command takes -c FILE, before or after it (else $RELAYQ_CONFIG, else /etc/relayq/config.toml, else the built-in default), and --help.")
}
