// Package tests holds relayq's end-to-end tests. They build the real binary
// once (TestMain), start `relayq serve` with a temporary configuration for
// each test, submit mail the ways a user would (the sendmail command, SMTP on
// the Unix socket and on the TCP listener, swaks) and check what a scripted
// upstream relay (transport/smtptest) received, what the daemon logged, and
// what `relayq queue list` and `relayq dead list` show.
//
// Each test opens with a comment naming the mail path it covers. Nothing here
// is imported by relayq itself; the package has no exported API.
package tests
