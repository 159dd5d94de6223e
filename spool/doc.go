// Package spool is relayq's intake: every local way a message gets into the
// queue.
//
//   - Server is an SMTP server (go-smtp) on the submission Unix socket and on
//     any extra TCP listeners the config names. It records who submitted
//     (SO_PEERCRED on the socket: the uid, the user name, and the systemd
//     unit from the peer's cgroup; identity.go) and answers "250 2.0.0 Ok:
//     queued as ID" only after queue.Put has returned, that is after the
//     bbolt commit. Options.Limits caps what each submitter may send
//     (limits.go): over a limit it answers 452 4.7.0 and accepts nothing.
//     Connections are capped in total and per uid (on TCP the owner of the
//     client's socket, tcpowner_linux.go),
//     idle ones closed early, and descriptors kept for the rest of the
//     daemon (caps.go): over a cap a connection gets 421 4.7.0. The
//     bodies being received share Options.MaxMemory, one submitter at most
//     half (memory.go): a message that finds no room gets 452 4.3.1 after
//     its final dot. Before the queue is open (a Server made without
//     Options.Queue, until Ready) a message is written into the maildrop
//     instead, with the submitter the session saw, and answered 250 once
//     the file is on disk; the import queues it once the queue is open
//     (starting.go, maildrop_intake.go).
//   - Server.Submit takes a message from another way in (the HTTP API,
//     package api) under the socket's policy, step for step: min_free, the
//     memory budget (HoldMemory lets the caller reserve for what it holds
//     before), [limits], address checks, aliases (Rewriting), max_recipients,
//     max_message_size, NUL octets, the Received stamp, header rewriting,
//     then queue.Put, or queue.PutOnce under an idempotency key
//     (submit.go). Refusals are *SubmitError: the reply a session would
//     give and the field it is about.
//   - Submit and Prepare are the client side of `relayq sendmail`: Prepare
//     turns standard input into a message (sendmail's rules: -t, dots, the
//     Date, Message-ID and From headers), Submit hands it to the daemon over
//     the socket.
//   - WriteMaildrop is sendmail's fallback when the daemon is down: one file
//     per message, written to a temporary name, fsynced and renamed into
//     place. Maildrop.Import and Maildrop.Watch, on the daemon's side, move
//     those files into the queue, each independently of the others and
//     under the policy the socket applies to the file's owner
//     (maildrop_policy.go). ServeStandalone is `sendmail -bs` with the
//     daemon down: an SMTP session on standard input and output whose
//     messages go to the maildrop.
//   - Every message taken in gets a Received header naming relayq, the
//     submitter (uid, or HELO name and address) and the queue ID, and, over
//     SMTP, a Date and a Message-ID when it has none, as Postfix's cleanup
//     does for local submitters (trace.go).
//
// Promises:
//
//   - Nothing is acknowledged (250, or a maildrop name returned) before it is
//     on stable storage: the queue's commit, or while the queue is not open
//     the maildrop file and its directory entry. What can go wrong after
//     that is a duplicate, never a loss: a crash between queue.Put and the
//     removal of a maildrop file imports that file again.
//   - DATA is read by RFC 5321 (a line starts after CRLF, whatever CRs come
//     before it), not by go-smtp's reader, which loses the line start after
//     CR CR LF (wire.go).
//   - Stored bodies have CRLF line endings only: a bare LF or bare CR is
//     turned into CRLF on the way in, so no sequence in a body can end the
//     DATA section of the relay we send it to (SMTP smuggling,
//     reliability.md §3.7). Bodies with NUL octets are refused (554 5.6.0 /
//     ErrBadMessage): they cannot be sent as text without being changed.
//   - Content is judged only where it would break the wire: an empty DATA is
//     accepted (an empty body), lines up to Options.MaxLineLength (1 MiB)
//     are accepted whatever RFC 5322 says (folding to 998 octets is for the
//     way out), and headers are not checked over SMTP.
//   - DSN requests (RET, ENVID on MAIL; NOTIFY, ORCPT on RCPT; sendmail's
//     -R, -V, -N) are checked (bad values: 501 5.5.4 / ErrBadDSN) and kept
//     with the message, through the maildrop too (dsn.go). SMTPUTF8 is kept
//     only when the message needs it (utf8.go); 8-bit bodies are marked.
//   - A Session method answers a client only with a bare *smtp.SMTPError, so
//     that go-smtp never turns a temporary local failure into 554. Replies
//     carry no paths or internal error text; the cause goes to the log.
//
// It does not deliver, retry or decide policy about senders beyond the
// per-submitter limits it is given; it does not
// authenticate (no AUTH on these listeners), and it does not decide which
// addresses to listen on (the config does).
package spool
