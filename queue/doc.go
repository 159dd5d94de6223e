// Package queue is relayq's durable message store, a single bbolt file.
//
// It owns the messages from the moment intake hands them over until they are
// delivered or dead-lettered: envelope, body, per-recipient state, the
// schedule of next attempts, the leases workers hold, and the dead letters.
// It knows nothing of SMTP on the wire; replies are kept as its own Reply.
//
// Promises:
//
//   - Put returns only after the bbolt transaction holding the message has
//     committed, that is after bbolt's fdatasync of the data and meta pages.
//     Only then may intake acknowledge the message. Concurrent Puts share one
//     commit (group commit, see committer.go), so many submitters pay for one
//     fsync between them.
//   - The body is written once, in chunks apart from the small message
//     record, and never rewritten: recording an attempt touches only the
//     record and the schedule.
//   - Every live message has exactly one schedule entry, at its next attempt
//     time. A message an operator put on hold has none, so it is never
//     leased; the hold is in its record and survives restarts.
//   - Leases are kept in memory, not in the file (lease.go): leasing costs
//     no commit, a crash leaves no lease behind (the messages are simply
//     due), and Open reads no record. A lease that runs out while the
//     process lives makes the message due again; the late worker's Record
//     then fails with ErrLeaseLost.
//   - Attempt counts and next-attempt times are stored per recipient, so
//     backoff goes on across restarts.
//   - A recipient that fails permanently moves to the dead-letter bucket with
//     the reply that killed it; the body stays until the dead letter is
//     purged. The dead letter keeps a copy of the message record, so that an
//     operator's Requeue puts it back as it was.
//   - Each recorded attempt is added to the message's history (history.go),
//     capped so that the record stays small; only the latest attempt keeps
//     its SMTP transcript.
//   - Operator operations (ops.go, dead.go) never change a message a worker
//     holds: they report ErrLeased for it and go on with the others.
//   - When a message leaves the queue (delivered, dead or deleted), a small
//     record of what became of it, without the body, is kept for
//     Options.HistoryRetention (archive.go) and then pruned in the
//     background, in small commits. A recipient whose attempt was cut off
//     after the final dot is kept as StatusUncertain (maybe delivered).
//   - Room on the file system is kept for recording outcomes (space.go):
//     Put refuses below Options.MinFree, and a reserve file is given up to
//     a record or a delete that fails for lack of room.
//   - A damaged file is reported as ErrDamaged, never a crash; CheckFile and
//     CompactFile work on the file offline, under bbolt's lock
//     (maintenance.go). Open reports it when it walks the file first (a
//     file left by a crash); a file closed cleanly keeps bbolt's freelist
//     (freelist.go), opens at once and is walked after Open
//     (pagewalk.go): nothing is leased before that walk ends, and damage
//     it finds comes on Damaged and makes Lease fail with ErrDamaged. The
//     saved freelist is checked before bbolt reads it (its structure, and
//     a checksum Close keeps in queue.db.freelist; without a match the
//     file is walked first and the freelist checked against the pages in
//     use): a damaged one fails Open with ErrFreelistDamaged, and
//     CompactFile writes a sound file without it.
//   - The file is trusted only as far as it is checked (damage.go,
//     prepare.go). A record that does not decode stops nothing else: it is
//     listed and counted as damaged, never leased, and Delete or Expire
//     (DeleteDead for a dead letter) remove it. Each body's CRC-32C is kept
//     in its record; VerifyBody (or AppendVerifiedBody, which checks the
//     bytes it returns), which delivery calls before it sends a byte, and
//     Check compare it, and a body that fails is never sent but
//     dead-lettered with reason corrupt. Records from before the checksum
//     have none and are delivered unchecked. An existing 0-byte file is
//     set aside, never silently made a new queue; a mode other than 0600
//     (of the file and of its in-flight journal) is set back with a
//     warning. A damaged key (one too short for a time and an ID in the
//     schedule or the history index, one that is no queue ID elsewhere)
//     is skipped and logged once, and Check names it in hex.
//
// Buckets: "messages" (id → compact Message, message_record.go; JSON before), "bodies" (id/chunk → bytes for
// a body of a few KiB, id → a bucket of chunks for a larger one: body.go),
// "schedule" (due time ‖ id → nothing), "dead" (id → JSON DeadLetter),
// "archive" (id → compact Archived, archive_record.go; JSON before), "archive-by-time" (time left ‖ id →
// nothing), "notices" (id → JSON NoticeRecord: the notices queued about
// it, notice.go), "meta" (format version; leases kept in memory; since when notices are on).
//
// It does not decide policy: when to retry, what is permanent and when a
// message expires are delivery's decisions, handed in through Record.
package queue
