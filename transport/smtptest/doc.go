// Package smtptest provides a scripted SMTP/LMTP peer for tests, in the
// manner of net/http/httptest.
//
// NewServer starts a relay on 127.0.0.1:0 (or on a Unix socket) that speaks
// enough SMTP, ESMTP and LMTP for relayq's client and intake code:
// EHLO/LHLO/HELO, STARTTLS and implicit TLS with a self-signed certificate
// (or one a test CA issued: NewCA, which also issues client certificates),
// AUTH PLAIN, LOGIN (the two-step "Username:"/"Password:" flavour),
// CRAM-MD5, and XOAUTH2 and OAUTHBEARER with their error challenges,
// MAIL with SIZE/BODY/SMTPUTF8, RCPT, DATA with dot-unstuffing, RSET, NOOP
// and QUIT. It records every transaction it accepted, byte for byte.
//
// Its behaviour is data: a Script lists, per command, what the server does
// at each successive occurrence of that command (reply with a code, delay,
// drop the connection, hang), after which it behaves normally. The script
// can be replaced while the server runs, so a test can make a relay fail
// and then recover.
//
// The protocol engine is written here rather than borrowed from go-smtp's
// server, because the faults tests need (no greeting, a refused DATA
// command, a hang-up after the final dot or between LMTP replies, a relay
// that stops reading mid-body, withholding an extension) cannot be
// expressed through go-smtp's Backend. The engine is lenient about syntax:
// it is a peer for testing clients, not a validator.
//
// The server is closed by t.Cleanup; its goroutines never touch the
// testing.TB except through the Logf option and WaitMessages, which runs on
// the test's goroutine.
package smtptest
