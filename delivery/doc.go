// Package delivery moves queued messages to the relay.
//
// A dispatcher leases due messages from the queue, as many as there are idle
// workers, and each worker hands its message to the transport and records
// the outcome per recipient. The decision what an outcome means is made in
// one place, classify.go:
//
//   - 2xx: delivered.
//   - 4xx, a timeout, a network or TLS error: deferred with exponential
//     backoff and jitter, computed from the attempt count stored with the
//     recipient, so backoff goes on across restarts. RCPT 552 counts as
//     4xx (RFC 5321 §4.5.3.1.10).
//   - 5xx: the recipient is dead-lettered with the relay's full reply.
//   - Failures of the session rather than of the message (connect, greeting,
//     TLS, EHLO, AUTH, 421) always defer, whatever their code: a broken relay
//     never kills mail.
//   - A connection lost after the final dot, before the reply, or a reply
//     to the dot that is no valid reply (999, "abc"), marks the
//     recipients uncertain (maybe delivered): they are retried and logged
//     as a possible duplicate, or, with Options.HoldUncertain, the message
//     is put on hold for the operator.
//   - A message older than the maximum lifetime at a failed attempt is
//     dead-lettered as expired, with its last reply.
//
// Each attempt's history entry carries the transport's transcript of the
// exchange; RelayStatus (relaystatus.go) reports the relay's state (ok,
// paused, probing) and the latest attempt's result, for `relayq status`.
//
// A Notifier (notice.go) queues RFC 3464 delivery status notifications
// about recipients it gave up on (and, optionally, a delay warning), at
// most one of each kind per message, recorded in the same commit.
//
// An outcome the store cannot record (disk full, an I/O error) is kept in
// memory with the message's lease, and its record retried with backoff
// (record.go): a message whose answer is known is never sent again, except
// after relayq stopped before the record, when its next attempt is logged
// as a possible duplicate.
//
// On shutdown it stops leasing, lets attempts in flight finish within a
// grace period, and gives back the leases of those it had to cut short, so
// no message is left leased, except those whose outcome is still
// unrecorded: they are left as a crash leaves them.
package delivery
