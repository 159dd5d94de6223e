package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Delivery status notifications (bounces, delay warnings) are messages
// relayq queues itself, about another message. The store keeps, per
// message, which notices were queued about it: the "notices" bucket maps a
// message ID to a NoticeRecord, and PutNotice writes that record in the
// same commit as the notice itself. So a notice of each kind is queued at
// most once per message, and a crash can lose neither the record nor the
// notice without the other (record before send: maddy#328 sent bounces
// twice because it did not).
//
// Whether a notice is owed at all is delivery's decision. To find the
// failure notices owed after a crash between the dead-lettering commit and
// the notice's commit, the store remembers since when notices are on
// (EnableNotices); FailureNoticesOwed lists the dead letters that died
// since then and have no notice yet.

var (
	bucketNotices   = []byte("notices")
	keyNoticesSince = []byte("notices-since")
)

// ViaNotice is the Submitter.Via of the notices relayq queues itself.
const ViaNotice = "notice"

// NoticeKind names a kind of notice.
type NoticeKind string

const (
	// NoticeFailed: some recipients failed for good (RFC 3464 Action:
	// failed), sent once the message has left the queue.
	NoticeFailed NoticeKind = "failed"
	// NoticeDelayed: still trying (Action: delayed), sent once while the
	// message waits.
	NoticeDelayed NoticeKind = "delayed"
)

// NoticeRecord says which notices were queued about one message: the
// notice's own queue ID and when, per kind.
type NoticeRecord struct {
	Failed    string    `json:"failed,omitempty"`
	FailedAt  time.Time `json:"failed_at,omitzero"`
	Delayed   string    `json:"delayed,omitempty"`
	DelayedAt time.Time `json:"delayed_at,omitzero"`
}

// Sent returns the queue ID of the notice of kind, "" if none was queued.
func (r NoticeRecord) Sent(kind NoticeKind) string {
	if kind == NoticeDelayed {
		return r.Delayed
	}
	return r.Failed
}

func (r *NoticeRecord) set(kind NoticeKind, id string, now time.Time) {
	if kind == NoticeDelayed {
		r.Delayed, r.DelayedAt = id, now
	} else {
		r.Failed, r.FailedAt = id, now
	}
}

// Notices returns what notices were queued about message id (a zero
// record when none was).
func (q *Queue) Notices(id string) (NoticeRecord, error) {
	var r NoticeRecord
	err := q.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getNotices(tx, id)
		return err
	})
	return r, err
}

func getNotices(tx *bolt.Tx, id string) (NoticeRecord, error) {
	var r NoticeRecord
	v := tx.Bucket(bucketNotices).Get([]byte(id))
	if v == nil {
		return r, nil
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("queue: notices of %s: %w", id, err)
	}
	return r, nil
}

// PutNotice queues a notice of kind about message about: env and body are
// the notice (normally from the null sender, to one recipient), stored as
// Put stores a message, with Submitter.Via set to ViaNotice. In the same
// commit it records the notice in about's NoticeRecord. When a notice of
// that kind was queued already it queues nothing and returns
// ErrNoticeSent. A delay notice is only queued while about is still in the
// queue with a recipient pending; otherwise PutNotice returns ErrNotFound.
func (q *Queue) PutNotice(ctx context.Context, about string, kind NoticeKind, env Envelope, body []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if len(env.Recipients) == 0 {
		return "", fmt.Errorf("queue: notice about %s: no recipients", about)
	}
	now := q.opts.Now()
	env.Submitter.Via = ViaNotice
	m := newMessage(q.ids.next(now), env, body, now)
	err := q.commit.commit(func(tx *bolt.Tx) error {
		if err := recordNotice(tx, about, kind, m.ID, now); err != nil {
			return err
		}
		if err := putBody(tx, m.ID, body); err != nil {
			return err
		}
		if err := putMessage(tx, m); err != nil {
			return err
		}
		return tx.Bucket(bucketSchedule).Put(scheduleKey(m.NextAttempt, m.ID), nil)
	})
	if err != nil {
		return "", fmt.Errorf("queue: %s notice about %s: %w", kind, about, err)
	}
	q.notify()
	return m.ID, nil
}

// NoticeWithheld stands in a NoticeRecord for the queue ID of a notice
// that delivery decided not to send ([notify] max_per_hour): that notice
// is settled, and neither the sweep nor a restart sends it.
const NoticeWithheld = "withheld"

// WithholdNotice records that no notice of kind will be sent about message
// about, as PutNotice records one it queued: ErrNoticeSent when one was
// queued or withheld already; for a delay notice, ErrNotFound when about
// has nothing pending any more.
func (q *Queue) WithholdNotice(about string, kind NoticeKind) error {
	err := q.commit.commit(func(tx *bolt.Tx) error {
		return recordNotice(tx, about, kind, NoticeWithheld, q.opts.Now())
	})
	if err != nil {
		return fmt.Errorf("queue: withhold %s notice about %s: %w", kind, about, err)
	}
	return nil
}

// recordNotice sets the notice of kind about message about to id in its
// NoticeRecord, unless one is set already (ErrNoticeSent).
func recordNotice(tx *bolt.Tx, about string, kind NoticeKind, id string, now time.Time) error {
	rec, err := getNotices(tx, about)
	if err != nil {
		return err
	}
	if sent := rec.Sent(kind); sent != "" {
		return fmt.Errorf("%w (as %s)", ErrNoticeSent, sent)
	}
	if kind == NoticeDelayed {
		if err := stillPending(tx, about); err != nil {
			return err
		}
	}
	rec.set(kind, id, now)
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketNotices).Put([]byte(about), v)
}

// newMessage is the record of a message that enters the queue now.
func newMessage(id string, env Envelope, body []byte, now time.Time) *Message {
	m := &Message{
		ID: id, From: env.From, Submitter: env.Submitter, Created: now, Size: int64(len(body)),
		UTF8: env.UTF8, EightBit: env.EightBit, DSN: env.DSN, NextAttempt: now,
		BodyCRC32C: bodySum(body),
	}
	for _, rcpt := range env.Recipients {
		m.Recipients = append(m.Recipients, Recipient{Address: rcpt, Status: StatusQueued})
	}
	return m
}

func stillPending(tx *bolt.Tx, id string) error {
	m, err := getMessage(tx, id)
	if err != nil {
		return err
	}
	if len(m.Pending()) == 0 {
		return fmt.Errorf("queue: %s: nothing pending: %w", id, ErrNotFound)
	}
	return nil
}

// EnableNotices records that relayq sends notices from now on, or (on
// false) that it does not. It returns since when they are on: the time of
// the first call with true after the last call with false, kept across
// restarts. FailureNoticesOwed looks no further back, so turning notices
// on never bounces mail that died while they were off.
func (q *Queue) EnableNotices(on bool) (since time.Time, err error) {
	now := q.opts.Now()
	err = q.commit.commit(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if !on {
			since = time.Time{}
			return meta.Delete(keyNoticesSince)
		}
		if v := meta.Get(keyNoticesSince); v != nil {
			return since.UnmarshalText(v)
		}
		since = now
		v, err := now.MarshalText()
		if err != nil {
			return err
		}
		return meta.Put(keyNoticesSince, v)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("queue: enable notices: %w", err)
	}
	return since, nil
}

// FailureNoticesOwed returns the dead letters that may be owed a failure
// notice: died at or after since, not from the null sender, their message
// no longer in the queue, and no failure notice queued about them. It
// also deletes the notice records of messages that are gone for good (no
// message, no dead letter), which can have no further notice.
func (q *Queue) FailureNoticesOwed(since time.Time) ([]*DeadLetter, error) {
	var owed []*DeadLetter
	var stale [][]byte
	err := q.db.View(func(tx *bolt.Tx) error {
		messages, dead := tx.Bucket(bucketMessages), tx.Bucket(bucketDead)
		err := dead.ForEach(func(k, v []byte) error {
			d, err := decodeDead(v)
			if err != nil {
				return nil // damaged: no sender to tell (queue check names it)
			}
			if d.Died.Before(since) || d.From == "" || messages.Get(k) != nil {
				return nil
			}
			rec, err := getNotices(tx, d.ID)
			if err != nil {
				// Damaged: a notice may have gone out already, and
				// one too few is better than one twice.
				return nil
			}
			if rec.Failed == "" {
				owed = append(owed, d)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketNotices).ForEach(func(k, _ []byte) error {
			if messages.Get(k) == nil && dead.Get(k) == nil {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: notices owed: %w", err)
	}
	if len(stale) > 0 {
		err := q.commit.commitSpare(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketNotices)
			for _, k := range stale {
				// Checked again: a requeue may have brought it back.
				if tx.Bucket(bucketMessages).Get(k) == nil && tx.Bucket(bucketDead).Get(k) == nil {
					if err := b.Delete(k); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrClosed) {
			return owed, fmt.Errorf("queue: prune notice records: %w", err)
		}
	}
	return owed, nil
}
