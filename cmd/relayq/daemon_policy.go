package main

import (
	"context"
	"log/slog"

	"relayq"
	"relayq/control"
	"relayq/delivery"
	"relayq/queue"
	"relayq/spool"
)

// The daemon's policies for the people who run and use it: per-submitter
// intake limits ([limits]), who may use the control socket ([control]
// admin_group) and the notices relayq sends ([notify]).

// intakeLimits turns [limits] into spool's Limits.
func intakeLimits(l relayq.LimitsConfig) spool.Limits {
	out := spool.Limits{Default: spool.Limit{MessagesPerHour: l.MessagesPerHour, QueuedBytes: int64(l.QueuedBytes)}}
	for _, r := range l.Rules {
		kind, value := r.Match()
		perHour, bytes := r.Effective(l)
		out.Rules = append(out.Rules, spool.LimitRule{
			Kind: spool.LimitKind(kind), Value: value,
			Limit: spool.Limit{MessagesPerHour: perHour, QueuedBytes: int64(bytes)},
		})
	}
	return out
}

// listenControl opens the control socket for root, the daemon's user and
// the admin group; status asks relays for the relay's state.
func listenControl(cfg *relayq.Config, q *queue.Queue, log *slog.Logger, relays func() []control.RelayStatus) (*control.Server, error) {
	gid, err := cfg.Control.AdminGID()
	if err != nil {
		return nil, &configError{err}
	}
	return control.ListenWith(control.Options{Socket: cfg.Control.Socket, Queue: q, Logger: log, AdminGID: gid, Relays: relays})
}

// startNotifier starts the notices' sweep when [notify] bounce is on. It
// returns the Notifier for the deliverer (nil when notices are off) and a
// channel closed once the sweep has stopped, after ctx ends.
func (d *daemon) startNotifier(ctx context.Context) (*delivery.Notifier, <-chan struct{}) {
	done := make(chan struct{})
	n := d.cfg.Notify
	if n.Bounce == relayq.BounceNone {
		close(done)
		// So that turning notices on later does not bounce what died
		// while they were off.
		if _, err := d.q.EnableNotices(false); err != nil {
			d.log.Error("notices: cannot record that they are off", "err", err)
		}
		return nil, done
	}
	notifier := delivery.NewNotifier(delivery.NoticeOptions{
		Queue:       d.q,
		To:          delivery.NoticeTarget(n.Bounce),
		Postmaster:  n.PostmasterAddress,
		DelayAfter:  n.DelayWarningAfter.Duration,
		MaxLifetime: d.cfg.Retry.MaxLifetime.Duration,
		Hostname:    d.cfg.Submission.Hostname,
		Relay:       d.relay,
		Logger:      d.log,
	})
	go func() {
		defer close(done)
		if err := notifier.Run(ctx); err != nil {
			d.log.Error("notices stopped", "err", err)
		}
	}()
	return notifier, done
}
