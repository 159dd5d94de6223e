package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"relayq/config"
	"relayq/control"
	"relayq/delivery"
	"relayq/queue"
	"relayq/spool"
)

// The daemon's policies for the people who run and use it: per-submitter
// intake limits ([limits]), who may use the control socket ([control]
// admin_group) and the notices relayq sends ([notify]).

// intakeLimits turns [limits] into spool's Limits.
func intakeLimits(l config.LimitsConfig) spool.Limits {
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

// warnListeners says at start that a loopback listener is open to every
// local user: socket_mode and socket_group, which may keep users off the
// socket and the maildrop, do not reach it, and relayq has no submission
// AUTH to stand in for them.
func warnListeners(s config.SubmissionConfig, log *slog.Logger) {
	for _, addr := range s.Listen {
		log.Warn("submission listener accepts mail from every local user and process: socket_mode and socket_group do not apply to it",
			"listen", addr, "socket_mode", fmt.Sprintf("%04o", s.SocketMode), "socket_group", s.SocketGroup)
	}
}

// listenControl opens the control socket for root, the daemon's user and
// the admin group; status asks relays for the relay's state and intake for
// the submitters' use of their limits; reload is `relayq reload`; flush
// runs before `relayq flush` makes the queue due.
func listenControl(cfg *config.Config, q *queue.Queue, log *slog.Logger, relays func() []control.RelayStatus, intake *spool.Server, reload func() error, flush func()) (*control.Server, error) {
	gid, err := cfg.Control.AdminGID()
	if err != nil {
		return nil, &startErr{exitConfig, err}
	}
	s, err := control.ListenWith(control.Options{Socket: cfg.Control.Socket, MailqSocket: cfg.Control.MailqSocket, Queue: q, Logger: log, AdminGID: gid,
		Relays: relays, Limits: func() []control.LimitStatus { return limitStatus(intake.LimitUsage()) },
		Memory: intake.MemoryInFlight, Reload: reload, Flush: flush})
	if err != nil {
		return nil, &startErr{listenExitCode(err), err}
	}
	return s, nil
}

// listenExitCode is the exit code for a socket or address relayq cannot
// listen on: 75 (try again) when another relayq holds it, else 71.
func listenExitCode(err error) int {
	if errors.Is(err, spool.ErrSocketInUse) || errors.Is(err, control.ErrSocketInUse) {
		return exitTempFail
	}
	return exitOSErr
}

// limitStatus carries intake's view of the limits over the control socket.
func limitStatus(usage []spool.LimitUsage) []control.LimitStatus {
	var out []control.LimitStatus
	for _, u := range usage {
		st := control.LimitStatus{Submitter: u.Key, MessagesPerHour: u.MessagesPerHour, QueuedBytesLimit: u.Limit.QueuedBytes, Refused: u.Refused}
		if u.MessagesLastHour >= 0 {
			st.MessagesLastHour = &u.MessagesLastHour
		}
		if u.QueuedBytes >= 0 {
			st.QueuedBytes = &u.QueuedBytes
		}
		if !u.LastRefused.IsZero() {
			st.LastRefused = &u.LastRefused
		}
		out = append(out, st)
	}
	return out
}

// startNotifier starts the notices' sweep when [notify] bounce is on. It
// returns the Notifier for the deliverer (nil when notices are off) and a
// channel closed once the sweep has stopped, after ctx ends.
func (d *daemon) startNotifier(ctx context.Context) (*delivery.Notifier, <-chan struct{}) {
	done := make(chan struct{})
	n := d.cfg.Notify
	if n.Bounce == config.BounceNone {
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
		MaxPerHour:  n.MaxPerHour,
		MaxLifetime: d.cfg.Retry.MaxLifetime.Duration,
		Hostname:    d.cfg.Submission.Hostname,
		Relay:       noticeRelay(d.relaySet), // routing.go
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
