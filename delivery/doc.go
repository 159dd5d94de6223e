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
// Several relays (Endpoints) and a routing table (package route) are read
// at each attempt: the message's pending recipients are grouped by route,
// and each group, a "part", is its own transaction to the first usable
// relay of its route (parts.go). A relay that fails as a whole (the
// session failures above) is skipped for the next one in the same attempt
// (failover). Each relay has its own transport (pool, rate limit) and its
// own circuit breaker (pause.go): after a session failure it is down for
// a pause that doubles up to RetryPolicy.InitialInterval; a part whose
// relays are all down waits, with no attempt counted, no reply and no
// notice, until one may be probed (its lifetime still counts: past it,
// the recipient dies, expired); one probe at a time goes to a relay whose
// pause is over, and the first success makes every message waiting for it
// due at once.
//
// Each part's history entry names its relay and carries the transport's
// transcript of the exchange; RelayStatuses (relaystatus.go) reports each
// relay's state (ok, paused, probing) and its latest attempt's result, for
// `relayq status`.
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
