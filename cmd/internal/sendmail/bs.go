package sendmail

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"relayq/cmd/internal/sysexits"
	"relayq/config"
	"relayq/spool"
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
// When the daemon's socket does not answer, relayq answers the session
// itself and writes each message to the maildrop, as sendmail without -bs
// does (spool.ServeStandalone): 250 once the file is on disk.
func (a *sendmailArgs) runSMTP(words []string, env Env, modes Modes) int {
	cfg, code := a.publicConfig(words, env, modes) // sendmail.go
	if cfg == nil {
		return code
	}
	nc, err := net.DialTimeout("unix", cfg.Submission.Socket, smtpDialTimeout)
	if err != nil {
		return modes.Standalone(Session{Words: words, cfg: cfg}, env)
	}
	defer nc.Close()
	return carrySMTP(nc.(*net.UnixConn), env)
}

// carrySMTP copies standard input to the daemon and the daemon's replies to
// standard output until the daemon closes the session (after QUIT, or when
// standard input has ended: its end is passed on as the end of the
// connection's input).
func carrySMTP(nc *net.UnixConn, env Env) int {
	go func() {
		io.Copy(nc, env.Stdin)
		nc.CloseWrite()
	}()
	if _, err := io.Copy(env.Stdout, nc); err != nil {
		fmt.Fprintf(env.Stderr, "sendmail: SMTP session with relayq: %v\n", err)
		return sysexits.IOErr
	}
	return sysexits.OK
}

// Session is an SMTP session on standard input (-bs) that the daemon's
// socket did not take, for Modes.Standalone.
type Session struct {
	Words []string // the whole command line
	cfg   *config.Config
}

// ServeStandalone is Modes.Standalone for relayq: the session on standard
// input answered here, each message written to the maildrop with a 250
// once the file is on disk (spool.ServeStandalone).
func ServeStandalone(s Session, env Env) int {
	cfg := s.cfg
	sub := cfg.Submission
	err := spool.ServeStandalone(env.Stdin, env.Stdout, spool.StandaloneOptions{
		Maildrop: sub.Maildrop, Hostname: sub.Hostname,
		QueuePath: cfg.Queue.Path, MinFree: int64(cfg.Queue.MinFree),
		MaxMessageSize: int64(sub.MaxMessageSize), MaxRecipients: sub.MaxRecipients,
		Log: slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintf(env.Stderr, "sendmail: SMTP session (relayq is not running): %v\n", err)
		return sysexits.IOErr
	}
	return sysexits.OK
}
