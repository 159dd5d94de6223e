// Package api is relayq's HTTP submission API: another way in, beside the
// SMTP socket, for applications that send notifications.
//
//   - POST /v1/messages takes a message in Nodemailer's shape (JSON: from,
//     to, cc, bcc, reply_to, subject, text, html, headers, attachments,
//     envelope), composes it with go-message (multipart/alternative,
//     related and mixed as needed; quoted-printable text, base64
//     attachments; RFC 2047 headers; Date and Message-ID), or takes a raw
//     message/rfc822 with the envelope in the query, and hands it to
//     spool.Server.Submit: the same intake policy as the socket (limits,
//     memory budget, min_free, aliases and refusal of unknown recipients,
//     [defaults] and header rewriting, Received). It answers 202 with the
//     queue ID and the Message-ID only after the commit.
//   - Idempotency-Key: the key is stored with the message in the same bbolt
//     transaction (queue.PutOnce); a repeat within the window gets the
//     first answer and queues nothing, a different request under the same
//     key gets 409. Requests with the same key wait for each other
//     (keyLocks). Keys are kept apart per caller (uid on the socket, the
//     token on TCP).
//   - GET /v1/messages/{id} is `relayq queue status`: state and, per
//     recipient, status, attempts, relay and last reply.
//   - Errors are {"error": {"code", "message", "field"}}: 400 for a bad
//     request (naming the field), 413 over a size or count limit, 422 an
//     unknown recipient, 409 a reused key, 429 over [limits], 503 and 507
//     (with Retry-After) when intake cannot take it now.
//
// Content access: an attachment's bytes come from the request, or, when the
// listener allows it (Access), from a file under Options.FileRoots (opened
// through os.Root: no ".." or symbolic link leaves the root; a socket
// caller must own the file or it must be world-readable) or from an http or
// https URL (fetched once at submission, bounded in size and time, every
// dialled address checked at dial time so no redirect or DNS answer leads
// to a loopback or private address). The bytes are in the queued message: a
// retry never reads or fetches again.
//
// The listeners are the API's Unix socket (mode and group as the
// submission socket; the caller's uid from SO_PEERCRED counts for
// [limits]) and optionally a loopback TCP address, which needs a bearer
// token (compared in constant time). Each has a connection cap, header and
// request timeouts and a request size limit.
//
// It does not deliver, authenticate local users beyond the socket's
// permissions, or decide policy: spool does.
package api
