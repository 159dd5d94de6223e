// Package sendmail is the sendmail-compatible command of relayq, shared by
// `relayq sendmail` and the relayq-sendmail binary (installed as
// /usr/sbin/sendmail): sendmail's command line as getopt(3) reads it
// (sendmail.go, dsn.go), one message from standard input prepared and
// handed to the daemon's socket, or to the maildrop when the daemon is
// down, exiting 0 only once it is on disk; -bs, an SMTP session on
// standard input carried to the daemon (bs.go); and the configuration that
// every local user may load (config.go).
//
// The modes that are other commands (-bp: mailq, -bi: newaliases, -q:
// flush) it leaves to its caller (Modes): relayq runs them itself, and
// relayq-sendmail, which links only what a submission needs (not the
// daemon, nor its Prometheus metrics, whose package init would cost every
// message a millisecond), hands them to relayq.
package sendmail
