// Command relayq-sendmail is relayq's sendmail, and nothing else: installed
// as /usr/sbin/sendmail (and mailq, newaliases), it submits one message to
// the relayq daemon exactly as `relayq sendmail` does (package
// cmd/internal/sendmail: same flags, output and exit codes), but links
// only what a submission needs. Not the daemon, and not its Prometheus
// metrics, whose package init alone costs over a millisecond: sendmail
// runs once per message, so its start is paid per message (issue 15).
//
// What is another command (mailq, newaliases; sendmail -bp, -bi, -q) it
// hands to relayq, which replaces this process (relayq.go), and so it does
// with an SMTP session (-bs) while the daemon is down. Built without
// cgo, it hands relayq the whole call when the call needs the user or
// group database and only the C library could answer for it (userdb.go).
package main

import (
	"os"
	"path/filepath"
	"sync"

	"relayq/cmd/internal/sendmail"
)

func main() {
	env := sendmail.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	relayq := execRelayq("sendmail")
	modes := sendmail.Modes{
		List: execRelayq("mailq"), Aliases: execRelayq("newaliases"), Flush: execRelayq("flush"),
		// -bs with the daemon down: relayq answers the session.
		Standalone: func(s sendmail.Session, env sendmail.Env) int { return relayq(s.Words, env) },
	}
	switch filepath.Base(os.Args[0]) {
	case "mailq":
		os.Exit(modes.List(os.Args[1:], env))
	case "newaliases":
		os.Exit(modes.Aliases(os.Args[1:], env))
	}
	if !withCgo {
		modes.Sendmail = relayq
		// Asked only when the call needs the user or group database
		// (userdb.go): most do not (-f, $HOME set, no group by name).
		modes.UserDB = sync.OnceValue(func() bool { return systemUserFiles.answerFor(os.Getuid()) })
	}
	os.Exit(sendmail.Run(os.Args[1:], env, modes))
}
