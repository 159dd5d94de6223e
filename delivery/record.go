package delivery

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"

	"relayq/queue"
)

// Once an attempt is over, the relay's answer is known: sending the
// message again would deliver it twice. So when the store cannot record
// the outcome (disk full, quota, file size limit, an I/O error), the
// worker keeps the outcome in memory and the message's lease with it, and
// tries the record again with backoff until it is stored. Nothing sends the
// message meanwhile. If relayq stops first, the message is left as a crash
// leaves it: the in-flight journal still has it out for delivery, so the
// next run tries it again and logs that attempt possible_duplicate=true.
// An attempt whose outcome is only a deferral is not held: losing its
// record sends nothing twice, so its lease is left to run out instead.

// Backoff of the record's retries.
const (
	recordRetryInitial = 250 * time.Millisecond
	recordRetryMax     = 30 * time.Second
	recordRetryMin     = 50 * time.Millisecond // whatever the lease says: never a busy loop
)

// keepRecording retries the record of an attempt that failed with err,
// holding l, until it is stored, the lease is lost, or ctx ends (after one
// last try). It returns the record as RecordParts does.
func (d *Deliverer) keepRecording(ctx context.Context, l *queue.Lease, parts []queue.Part, err error) (*queue.Message, error) {
	if !queue.MustRecord(parts) && !errors.Is(err, queue.ErrLeaseLost) {
		// Only deferrals (or waits): nothing would be sent twice if the
		// record were lost. The worker does not stay to retry it; the
		// message keeps its lease until that runs out, which is its
		// backoff (no loop), and is then tried again as a deferral
		// would be. The reserve is not spent on it (Queue.RecordParts).
		d.opts.Logger.Error("cannot record a deferral; the message is tried again when its lease runs out",
			"id", l.ID, "lease_until", l.LeasedUntil, "err", err)
		return nil, err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = recordRetryInitial, recordRetryMax, 0
	b.Reset()
	for failures := 1; ; failures++ {
		if errors.Is(err, queue.ErrLeaseLost) {
			d.opts.Logger.Error("cannot record attempt: the lease was lost; the message will be tried again", "id", l.ID, "err", err)
			return nil, err
		}
		if rerr := d.opts.Queue.Renew(l); rerr != nil {
			d.opts.Logger.Error("cannot record attempt: the lease was lost; the message will be tried again", "id", l.ID, "err", err)
			return nil, rerr
		}
		// The lease must outlast the wait: it is renewed before each one.
		wait := max(min(b.NextBackOff(), l.LeasedUntil.Sub(d.opts.Now())/2), recordRetryMin)
		d.opts.Logger.Error("cannot record attempt; keeping its outcome and trying again, the message is not sent again",
			"id", l.ID, "failures", failures, "retry_in", wait, "err", err)
		if !sleep(ctx, wait) {
			rec, err := d.opts.Queue.RecordParts(l, parts)
			if err != nil {
				d.opts.Logger.Error("shutting down with an attempt unrecorded; the next start tries the message again and marks it possible_duplicate", "id", l.ID, "err", err)
			}
			return rec, err
		}
		var rec *queue.Message
		if rec, err = d.opts.Queue.RecordParts(l, parts); err == nil {
			d.opts.Logger.Info("attempt recorded after all", "id", l.ID, "failures", failures)
			return rec, nil
		}
	}
}

// sleep waits for d; it reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
