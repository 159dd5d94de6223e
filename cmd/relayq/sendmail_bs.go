package main

import (
	"fmt"
	"io"
	"net"
	"time"

	"relayq"
)

// smtpDialTimeout bounds the connection to the daemon's socket for -bs.
const smtpDialTimeout = 10 * time.Second

// runSMTP is sendmail -bs: an SMTP session on standard input and output,
// as mail clients such as Alpine use it (Postfix runs its smtpd there).
// relayq carries the session to the daemon's socket, byte for byte both
// ways, so the daemon answers every command: the submitter is this
// process's user (SO_PEERCRED), and each message is queued, with the
// daemon's 250, before the client hears it.
//
// When the daemon's socket does not answer, the client gets a 421 greeting
// (try again later) and the exit status is 75, as for sendmail without the
// daemon and without a maildrop.
func (a *sendmailArgs) runSMTP(env cmdEnv) int {
	cfg, _, err := relayq.FindForClient(a.config, env.Getenv)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sendmail: %v\n", err)
		return exitConfig
	}
	nc, err := net.DialTimeout("unix", cfg.Submission.Socket, smtpDialTimeout)
	if err != nil {
		fmt.Fprintf(env.Stdout, "421 4.3.2 %s relayq is not running, try again later\r\n", cfg.Submission.Hostname)
		fmt.Fprintf(env.Stderr, "sendmail: the relayq daemon is not reachable: %v\n", err)
		return exitTempFail
	}
	defer nc.Close()
	return carrySMTP(nc.(*net.UnixConn), env)
}

// carrySMTP copies standard input to the daemon and the daemon's replies to
// standard output until the daemon closes the session (after QUIT, or when
// standard input has ended: its end is passed on as the end of the
// connection's input).
func carrySMTP(nc *net.UnixConn, env cmdEnv) int {
	go func() {
		io.Copy(nc, env.Stdin)
		nc.CloseWrite()
	}()
	if _, err := io.Copy(env.Stdout, nc); err != nil {
		fmt.Fprintf(env.Stderr, "sendmail: SMTP session with relayq: %v\n", err)
		return exitIOErr
	}
	return exitOK
}
