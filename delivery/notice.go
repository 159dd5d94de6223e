package delivery

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"relayq/queue"
)

// Notices ([notify] in the config): relayq tells the sender (or the
// postmaster) when it gives up on recipients, with an RFC 3464 delivery
// status notification it queues like any other message, from the null
// sender.
//
//   - A failure notice is sent once the message has left the queue (every
//     recipient delivered or dead) and some recipients died: one notice per
//     message, naming every dead recipient.
//   - A delay notice ("still trying") is sent once, at the first attempt
//     after the message has waited NoticeOptions.DelayAfter.
//   - Never about a message from the null sender (a notice, or someone
//     else's bounce), so notices cannot loop; and, to the sender, only for
//     recipients whose NOTIFY (RFC 3461) did not rule it out.
//   - queue.PutNotice records the notice in the same commit that queues
//     it, so no crash makes it go twice; and a dead letter that a crash
//     left without its notice is found by the sweep Run does at start and
//     every SweepInterval, which also catches messages an operator expired.

// NoticeTarget says who gets notices.
type NoticeTarget string

const (
	NoticeToSender     NoticeTarget = "sender"
	NoticeToPostmaster NoticeTarget = "postmaster"
)

// NoticeOptions configures a Notifier. Queue, To and Hostname are
// required; Postmaster too when To is NoticeToPostmaster.
type NoticeOptions struct {
	Queue      *queue.Queue
	To         NoticeTarget
	Postmaster string // the address notices go to with NoticeToPostmaster
	// DelayAfter is how long a message waits before its delay notice; 0
	// sends none.
	DelayAfter time.Duration
	// MaxLifetime is when messages expire (Will-Retry-Until); 0 leaves it
	// out.
	MaxLifetime time.Duration
	// Hostname names this relayq in Reporting-MTA and in the notice's
	// From (MAILER-DAEMON@Hostname).
	Hostname string
	// Relay names the relay ("smtp://mail.example.com:587"); its host is
	// the Remote-MTA of relay replies.
	Relay string
	// MaxPerHour caps the notices to one address in an hour (see
	// noticeLimit); 0 sends every one.
	MaxPerHour int
	// SweepInterval is how often Run looks for failure notices owed that
	// no attempt sent; default 1m.
	SweepInterval time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
}

// Notifier queues notices; see NoticeOptions.
type Notifier struct {
	opts  NoticeOptions
	relay string
	log   *slog.Logger
	limit *noticeLimit
}

// NewNotifier returns a Notifier; call Run to start its sweep, and pass it
// in Options.Notifier so that attempts trigger notices at once.
func NewNotifier(opts NoticeOptions) *Notifier {
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	n := &Notifier{opts: opts, log: opts.Logger, limit: newNoticeLimit(opts.MaxPerHour)}
	if u, err := url.Parse(opts.Relay); err == nil {
		n.relay = u.Hostname()
	}
	return n
}

// Run records in the store that notices are on, then sweeps for failure
// notices owed at once and every SweepInterval until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	since, err := n.opts.Queue.EnableNotices(true)
	if err != nil {
		return err
	}
	t := time.NewTicker(n.opts.SweepInterval)
	defer t.Stop()
	for {
		n.sweep(ctx, since)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (n *Notifier) sweep(ctx context.Context, since time.Time) {
	owed, err := n.opts.Queue.FailureNoticesOwed(since)
	if err != nil {
		n.log.Error("notices: cannot look for notices owed", "err", err)
	}
	for _, d := range owed {
		if ctx.Err() != nil {
			return
		}
		n.failed(ctx, d)
	}
}

// After is called with the message record an attempt left (see
// queue.RecordAttempt); it queues the notice the attempt calls for, if
// any. A nil Notifier does nothing.
func (n *Notifier) After(m *queue.Message) {
	if n == nil || m == nil || m.From == "" || m.Submitter.Via == queue.ViaNotice {
		return
	}
	ctx := context.Background()
	switch {
	case len(m.Pending()) == 0:
		if slices.ContainsFunc(m.Recipients, func(r queue.Recipient) bool { return r.Status == queue.StatusDead }) {
			d, err := n.opts.Queue.GetDead(m.ID)
			if err != nil {
				// Purged already, or the store failed: the sweep tries
				// again if there is anything to say.
				n.log.Warn("notices: no dead letter to report on", "id", m.ID, "err", err)
				return
			}
			n.failed(ctx, d)
		}
	case n.opts.DelayAfter > 0 && n.opts.Now().Sub(m.LifetimeStart()) >= n.opts.DelayAfter:
		n.delayed(ctx, m)
	}
}

// wants reports whether r's sender asked to hear of this kind of notice:
// NOTIFY not given, or naming it. The postmaster hears of everything.
func (n *Notifier) wants(r queue.Recipient, kind queue.NoticeKind) bool {
	if n.opts.To == NoticeToPostmaster || len(r.DSN.Notify) == 0 {
		return true
	}
	want := "FAILURE"
	if kind == queue.NoticeDelayed {
		want = "DELAY"
	}
	return slices.ContainsFunc(r.DSN.Notify, func(s string) bool { return strings.EqualFold(s, want) })
}

func (n *Notifier) failed(ctx context.Context, d *queue.DeadLetter) {
	if d.From == "" {
		return
	}
	var rcpts []queue.Recipient
	for _, r := range d.Recipients {
		if n.wants(r, queue.NoticeFailed) {
			rcpts = append(rcpts, r)
		}
	}
	if len(rcpts) == 0 {
		return
	}
	rep := n.report(queue.NoticeFailed, d.ID, d.From, d.Created, d.Attempts, rcpts)
	if d.Record != nil {
		rep.envid, rep.history = d.Record.DSN.EnvelopeID, d.Record.History
	}
	n.put(ctx, rep)
}

func (n *Notifier) delayed(ctx context.Context, m *queue.Message) {
	if rec, err := n.opts.Queue.Notices(m.ID); err != nil || rec.Delayed != "" {
		return
	}
	var rcpts []queue.Recipient
	for _, r := range m.Pending() {
		if r.Attempts > 0 && n.wants(r, queue.NoticeDelayed) {
			rcpts = append(rcpts, r)
		}
	}
	if len(rcpts) == 0 {
		return
	}
	rep := n.report(queue.NoticeDelayed, m.ID, m.From, m.Created, m.Attempts, rcpts)
	rep.envid, rep.history = m.DSN.EnvelopeID, m.History
	rep.waited = n.opts.Now().Sub(m.LifetimeStart())
	if n.opts.MaxLifetime > 0 {
		rep.retryUntil = m.LifetimeStart().Add(n.opts.MaxLifetime)
	}
	n.put(ctx, rep)
}

func (n *Notifier) report(kind queue.NoticeKind, id, from string, arrival time.Time, attempts int, rcpts []queue.Recipient) *report {
	to := from
	if n.opts.To == NoticeToPostmaster {
		to = n.opts.Postmaster
	}
	return &report{
		kind: kind, hostname: n.opts.Hostname, relay: n.relay, from: from, to: to,
		postmaster: n.opts.To == NoticeToPostmaster, id: id, arrival: arrival,
		attempts: attempts, rcpts: rcpts, now: n.opts.Now(),
	}
}

// put reads the original headers, builds the notice and queues it; or,
// past MaxPerHour for its recipient, records it as withheld.
func (n *Notifier) put(ctx context.Context, rep *report) {
	if ok, first, withheld := n.limit.take(rep.to, n.opts.Now()); !ok {
		n.withhold(rep, first, withheld)
		return
	}
	headers, err := readHeaders(n.opts.Queue.Body(rep.id))
	if err != nil {
		n.log.Warn("notices: cannot read the message's headers; sending the notice without them", "id", rep.id, "err", err)
	}
	rep.headers = headers
	body := rep.build()
	env := queue.Envelope{
		From:       "",
		Recipients: []string{rep.to},
		Submitter:  queue.Submitter{UID: -1},
		UTF8:       addressType(rep.to) == "utf-8",
		EightBit:   !isASCII(body),
	}
	id, err := n.opts.Queue.PutNotice(ctx, rep.id, rep.kind, env, body)
	switch {
	case errors.Is(err, queue.ErrNoticeSent), errors.Is(err, queue.ErrNotFound):
		return // sent already, or (delayed) delivered meanwhile
	case err != nil:
		n.log.Error("notices: cannot queue notice; will try again", "id", rep.id, "kind", rep.kind, "err", err)
		return
	}
	var addrs []string
	for _, r := range rep.rcpts {
		addrs = append(addrs, r.Address)
	}
	n.log.Info("notice queued", "id", rep.id, "kind", rep.kind, "notice", id, "to", rep.to, "rcpts", addrs)
}

// withhold records that rep is not sent. The first notice withheld in
// its recipient's window is logged at WARN, the rest at DEBUG.
func (n *Notifier) withhold(rep *report, first bool, withheld int) {
	err := n.opts.Queue.WithholdNotice(rep.id, rep.kind)
	switch {
	case errors.Is(err, queue.ErrNoticeSent), errors.Is(err, queue.ErrNotFound):
		return
	case err != nil:
		n.log.Error("notices: cannot record a withheld notice; will try again", "id", rep.id, "kind", rep.kind, "err", err)
		return
	}
	level := slog.LevelDebug
	msg := "notice withheld: notify.max_per_hour reached for its recipient"
	if first {
		level = slog.LevelWarn
		msg += "; further notices to it are withheld until the hour is over, logged at DEBUG (relayq dead list shows the dead letters)"
	}
	n.log.Log(context.Background(), level, msg, "id", rep.id, "kind", rep.kind, "to", rep.to,
		"max_per_hour", n.opts.MaxPerHour, "withheld", withheld)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
