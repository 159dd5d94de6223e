// Package transport sends messages to one upstream relay over SMTP or LMTP.
//
// It owns the client side of relayq: dialling (with a context and
// ConnectTimeout; the relay's name resolved within DNSTimeout and its
// addresses tried in turn; from LocalAddress; directly or through a SOCKS5
// or HTTP CONNECT proxy), implicit TLS, opportunistic or required STARTTLS
// with certificate verification and an optional client certificate, AUTH
// PLAIN/LOGIN, and a pool of reused connections. It reports what happened;
// it never decides what to do about it (retry, dead letter): that is the
// caller's job.
//
// What it promises:
//
//   - Every read and write on the relay connection has a deadline, the
//     message body included (GreetingTimeout, CommandTimeout, DataTimeout),
//     and a Send stops when its context ends.
//   - Nothing after the greeting but EHLO and STARTTLS is sent in clear
//     when RequireTLS is set (STARTTLS is tried even when the relay does
//     not offer it, since the offer may have been stripped), and
//     credentials never go over a connection without TLS unless
//     AllowInsecureAuth is set.
//   - The EHLO/LHLO name is LocalName before and after STARTTLS. (go-smtp's
//     client says "localhost" before STARTTLS, so transport reads the
//     greeting and does STARTTLS itself, then hands the TLS connection to
//     go-smtp with the greeting replayed.)
//   - The relay's replies reach the caller untouched, as *smtp.SMTPError:
//     per recipient for RCPT and for LMTP's replies after the dot; for the
//     whole transaction inside an *Error that records the Stage and whether
//     the final dot was already sent (AfterDot: a possible duplicate).
//     Refusals relayq decides itself (bad address, message over the
//     relay's SIZE, SMTPUTF8 or 8BITMIME missing) are *LocalError values
//     shaped like a 5xx reply.
//   - Error.Temporary is the one classification: only a 5xx reply (or
//     local 5xx refusal) to the message is permanent; a failed session
//     (dial, greeting, TLS, EHLO, AUTH) is always temporary.
//   - At most MaxConnections connections are open; a Send waits for one.
//     A connection is reused after a successful transaction, after RSET
//     following a refusal before the body, and never after an I/O error, a
//     421, or any failure once the body started. Idle connections are
//     checked with NOOP after IdleCheck and closed after IdleTimeout, and
//     each carries at most MaxMessages transactions.
//
// What it does not do: queueing, retries, DSNs, rewriting of the message
// (the body must already have CRLF line endings and sane line lengths).
package transport
