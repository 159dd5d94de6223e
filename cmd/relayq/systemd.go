package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sd "github.com/coreos/go-systemd/v22/daemon"

	"relayq/config"
)

// relayq under systemd (systemd/relayq.service, relayq.socket); all of it
// does nothing when relayq was not started by systemd.
//
//   - Socket activation: the submission socket and the loopback listeners
//     may be passed in (LISTEN_FDS). Each one is matched to the config by
//     its address: the socket's path must be [submission] socket, a TCP
//     socket's address one of [submission] listen. relayq serves them as
//     they are (their mode and group are the .socket unit's) and never
//     removes them, so that while relayq restarts, submissions wait in the
//     socket's backlog instead of being refused. What is not passed in,
//     relayq opens itself, as without systemd. The control socket is
//     always relayq's own: an admin command should hear at once that the
//     daemon is down (and `relayq sendmail` falls back to the maildrop
//     over it only through the submission socket), not wait in a backlog
//     for a daemon that may not come.
//   - Type=notify: READY=1 once the queue is open (recovered) and intake
//     listens; RELOADING=1, then READY=1, around a reload; STOPPING=1 when
//     shutdown begins.
//   - WatchdogSec=: WATCHDOG=1 every half interval, only while the
//     delivery loop goes round and the queue's committer answers
//     (watchdog), so that systemd restarts a wedged daemon.

// inheritedListeners takes the sockets systemd passed, keyed by the path or
// address of the config they stand for (spool.Options.Inherited). A socket
// that matches nothing in the config is an error: mail sent to it would
// wait for ever.
func inheritedListeners(s config.SubmissionConfig) (map[string]net.Listener, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	out := make(map[string]net.Listener, len(files))
	var errs []error
	for _, f := range files {
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("systemd: socket %s: %w", f.Name(), err))
			continue
		}
		key := configAddress(s, l.Addr())
		if key == "" {
			errs = append(errs, fmt.Errorf("systemd: socket %s (%s %s) is neither [submission] socket (%s) nor one of [submission] listen %q",
				f.Name(), l.Addr().Network(), l.Addr(), s.Socket, s.Listen))
			l.Close()
			continue
		}
		out[key] = l
	}
	if err := errors.Join(errs...); err != nil {
		for _, l := range out {
			l.Close()
		}
		return nil, &startErr{exitConfig, err}
	}
	return out, nil
}

// configAddress is the [submission] socket or listen entry that addr
// stands for; "" for none.
func configAddress(s config.SubmissionConfig, addr net.Addr) string {
	switch a := addr.(type) {
	case *net.UnixAddr:
		if a.Name == s.Socket {
			return s.Socket
		}
	case *net.TCPAddr:
		for _, listen := range s.Listen {
			want, err := net.ResolveTCPAddr("tcp", listen)
			if err == nil && want.Port == a.Port && want.IP.Equal(a.IP) {
				return listen
			}
		}
	}
	return ""
}

// notify tells systemd the daemon's state (sd_notify); without
// NOTIFY_SOCKET it does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("systemd: notify", "state", state, "err", err)
	}
}

// watchdog pings systemd's watchdog while the daemon is alive.
type watchdog struct {
	every time.Duration // half of WatchdogSec
	check func() error  // nil: alive
	ping  func()        // WATCHDOG=1
	log   *slog.Logger
}

// runWatchdog starts the pings when systemd asked for them (WATCHDOG_USEC);
// they stop when ctx ends.
func (d *daemon) runWatchdog(ctx context.Context) {
	interval, err := sd.SdWatchdogEnabled(true)
	if err != nil {
		d.log.Warn("systemd: watchdog", "err", err)
	}
	if interval <= 0 {
		return
	}
	dv := d.deliverer.Load()
	l := &liveness{lastTick: dv.LastTick, bound: dv.TickBound(), ping: d.q.Ping, wait: interval / 4, now: time.Now}
	w := watchdog{every: interval / 2, check: l.check, ping: func() { notify(d.log, sd.SdNotifyWatchdog) }, log: d.log}
	d.log.Info("systemd watchdog on", "interval", interval, "delivery_bound", l.bound)
	go w.run(ctx)
}

func (w watchdog) run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	var failing bool
	for {
		err := w.check()
		switch {
		case err == nil:
			if failing {
				w.log.Info("systemd watchdog: alive again; pings resume")
			}
			w.ping()
		case !failing:
			w.log.Error("systemd watchdog: not pinging, systemd will restart relayq", "err", err)
		}
		failing = err != nil
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// liveness is what the watchdog checks: the delivery loop went round
// within bound, and the queue's committer answers a read within wait. A
// read that does not answer in time is waited for again at the next
// check, not started anew, so a wedged committer costs one goroutine.
type liveness struct {
	lastTick func() time.Time
	bound    time.Duration
	ping     func() error
	wait     time.Duration
	now      func() time.Time

	pending chan error // the read in flight; nil when none
}

func (l *liveness) check() error {
	if last := l.lastTick(); !last.IsZero() && l.now().Sub(last) > l.bound {
		return fmt.Errorf("delivery loop stuck: last went round %s ago (bound %s)", l.now().Sub(last).Round(time.Second), l.bound)
	}
	if l.pending == nil {
		l.pending = make(chan error, 1)
		go func(ch chan<- error) { ch <- l.ping() }(l.pending)
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case err := <-l.pending:
		l.pending = nil
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		return nil
	case <-t.C:
		return errors.New("queue: the committer has not answered a read")
	}
}
