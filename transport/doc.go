// Package transport sends messages to one upstream relay over SMTP or LMTP.
//
// It owns the client side of relayq: dialling (with a context and
// ConnectTimeout; the relay's name resolved within DNSTimeout and its
// addresses tried in turn; from LocalAddress; directly or through a SOCKS5
// or HTTP CONNECT proxy), implicit TLS, opportunistic or required STARTTLS
// with certificate verification and an optional client certificate, AUTH
// (PLAIN, LOGIN, CRAM-MD5 with a password; XOAUTH2, OAUTHBEARER with an
// OAuth2 access token, renewed once when the relay rejects it), and a pool
// of reused connections. It reports what happened;
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
//     AllowInsecureAuth is set. Without RequireTLS, a relay that refuses
//     the STARTTLS it offers (454) is used in clear on the same session,
//     and one whose handshake ends in its own alert internal_error (its
//     TLS is broken) in clear on a new connection, as Postfix and exim
//     do (dial.go); any other TLS failure fails the session.
//   - The EHLO/LHLO name is LocalName before and after STARTTLS, and a
//     session says it once, and once more only after STARTTLS (RFC 3207),
//     however many transactions and RSETs it carries: relays such as
//     OpenSMTPD refuse a second one. (go-smtp's client says "localhost"
//     before STARTTLS, and EHLO again after every RSET, so transport reads
//     the greeting, says EHLO and does STARTTLS itself, then hands the
//     session to go-smtp on a clientConn that replays the greeting and
//     answers go-smtp's own hellos from the replies it got: clientconn.go.)
//   - The relay's replies reach the caller as *smtp.SMTPError, with their
//     code, enhanced code and lines, but bounded (512 bytes a line, 4 KiB
//     in all, cuts marked) and with every secret transport knows scrubbed
//     out, raw, URL-encoded or in base64 (reply.go, secrets.go):
//     per recipient for RCPT and for LMTP's replies after the dot; for the
//     whole transaction inside an *Error that records the Stage and whether
//     the final dot was already sent with no valid reply to it (AfterDot:
//     a possible duplicate), whether no reply came or one that is no valid
//     final reply (999, "abc", 354).
//     Replies are read as RFC 5321 §4.2 writes them, not as Go's
//     net/textproto does: a line may be the code alone ("250"), and a
//     multi-line reply broken by a line with another code or none ends
//     there, at once, as a malformed reply, instead of waiting for the
//     timeout (replyconn.go).
//     Refusals relayq decides itself (bad address, message over the
//     relay's SIZE, SMTPUTF8 or 8BITMIME missing) are *LocalError values
//     shaped like a 5xx reply.
//   - Error.Temporary is the one classification: only a 5xx reply (or
//     local 5xx refusal) to the message is permanent; a failed session
//     (dial, greeting, TLS, EHLO, AUTH) is always temporary.
//   - To a relay that offers PIPELINING (RFC 2920), over SMTP, MAIL, every
//     RCPT and DATA go in one write, and the body with its final dot in
//     another, with the command lines go-smtp writes (pipeline.go); the
//     body goes dot-stuffed in large writes whatever the relay (body.go).
//     When the relay also offers CHUNKING (RFC 3030), a message under 32
//     KiB goes in a single write instead: MAIL, every RCPT, "BDAT <size>
//     LAST" and the message, which the relay stores byte for byte as it
//     would have from DATA (chunking.go); a failure after that write is a
//     possible duplicate (AfterDot) unless a reply says the relay did not
//     take the message.
//   - At most MaxConnections connections are open; a Send waits for one,
//     and the one that has waited longest gets the next that frees up.
//     A connection is reused after a successful transaction, after RSET
//     following a refusal before the body, and never after an I/O error, a
//     421, any failure once the body started, or a refused BDAT
//     transaction. Idle connections are
//     checked with NOOP after IdleCheck and closed after IdleTimeout, and
//     each carries at most MaxMessages transactions; with NoPool, one.
//     A pooled connection the relay closed is replaced within the Send,
//     and so is one on which it refuses MAIL for now (4xx): relays limit
//     the messages of a session and then refuse MAIL on a session they
//     keep open (OpenSMTPD's max-mails: 452 4.5.3).
//   - With RateLimit, no RateDelta-long span holds more than RateLimit
//     MAIL commands, across the pool (rate.go); a Send waits for room
//     without holding a connection.
//   - The relay's extensions are used: SIZE= (and a message over the
//     relay's SIZE is refused before MAIL), BODY=8BITMIME and SMTPUTF8 when
//     the message needs them and only then (refused, not sent mangled,
//     when the relay lacks them), and the submission's DSN parameters (RET, ENVID,
//     NOTIFY, ORCPT) when the relay offers DSN, left out otherwise
//     (dsn.go); a utf-8 ORCPT whose address is ASCII goes as rfc822.
//   - With Debug, the conversation is logged line by line, as the protocol
//     sees it (above TLS), and never holds a credential: AUTH initial
//     responses and every client line of an AUTH exchange are redacted,
//     a secret the relay echoes is scrubbed, and the message body is
//     logged as its size (debug.go).
//   - Every Send, Debug or not, reports the same redacted conversation for
//     its message in Result.Transcript or Error.Transcript: its
//     transaction, and the session's start when it opened the connection;
//     at most 8 KiB, its first and last lines kept (transcript.go).
//
// Verify (verify.go) opens one session through the same code as Send and
// reports what it found (address, greeting, extensions, TLS and
// certificate, AUTH mechanism), optionally trying MAIL FROM and RCPT TO
// before RSET; it never sends DATA.
//
// What it does not do: queueing, retries, generating DSNs, rewriting of the message
// (the body must already have CRLF line endings and sane line lengths).
package transport
