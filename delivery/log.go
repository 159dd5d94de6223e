package delivery

import (
	"context"
	"log/slog"
	"time"

	"relayq/queue"
)

// eventLog writes one line per attempt per recipient, like Postfix's
// "status=" lines, with stable keys an operator can grep: id, rcpt, relay,
// attempt, delay (since the message was queued), took (this attempt),
// status (sent, deferred, dead) and reply.
type eventLog struct {
	l *slog.Logger
}

// attempt formats nothing when its level is off, and builds its line
// from typed attributes (LogAttrs: no value boxed on the way).
func (e *eventLog) attempt(m *queue.Message, relay string, o queue.Outcome, uncertain bool, took time.Duration) {
	status, level := "sent", slog.LevelInfo
	switch o.Result {
	case queue.Deferred:
		status, level = "deferred", slog.LevelWarn
	case queue.Failed:
		status, level = "dead", slog.LevelError
	}
	ctx := context.Background()
	if !e.l.Enabled(ctx, level) {
		return
	}
	var buf [12]slog.Attr
	attrs := append(buf[:0],
		slog.String("id", m.ID), slog.String("from", m.From), slog.String("rcpt", o.Address), slog.String("relay", relay),
		slog.Int("attempt", m.Attempts+1), slog.Duration("delay", time.Since(m.Created).Round(time.Millisecond)),
		slog.Duration("took", took.Round(time.Millisecond)), slog.String("status", status), slog.String("reply", o.Reply.String()),
	)
	if o.Result == queue.Deferred {
		attrs = append(attrs, slog.String("next", o.NextAttempt.Format(time.RFC3339)))
	}
	if uncertain {
		// RFC 1047: the relay may have taken the message already (this
		// attempt, lost after the dot, or one a crash interrupted), so the
		// recipient may receive it twice.
		attrs = append(attrs, slog.Bool("possible_duplicate", true))
	}
	e.l.LogAttrs(ctx, level, "delivery", attrs...)
}

// corrupt logs a message dead-lettered unsent because its body failed
// its checksum: one "delivery" line per recipient, status dead, reason
// corrupt.
func (e *eventLog) corrupt(m *queue.Message, relay string, err error) {
	for _, r := range m.Pending() {
		e.l.Error("delivery", "id", m.ID, "from", m.From, "rcpt", r.Address, "relay", relay,
			"delay", time.Since(m.Created).Round(time.Millisecond), "status", "dead", "reason", queue.ReasonCorrupt, "err", err)
	}
}

// waiting logs, at debug level, a recipient that was not tried because
// every relay of its route is down: no attempt, so no "delivery" line (the
// relay's own warning says it is down, and `relayq status` shows it), but
// the relay it waits for and until when.
func (e *eventLog) waiting(m *queue.Message, route string, o queue.Outcome) {
	if !e.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	e.l.Debug("waiting for relay", "id", m.ID, "from", m.From, "rcpt", o.Address, "route", route, "relay", o.Relay,
		"next", o.NextAttempt.Format(time.RFC3339))
}

func (e *eventLog) interrupted(l *queue.Lease, relay string, err error) {
	e.l.Info("delivery interrupted by shutdown; will retry", "id", l.ID, "relay", relay, "err", err)
}
