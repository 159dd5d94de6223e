package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"relayq/config"
	"relayq/queue"
	"relayq/spool"
)

func runServe(args []string, env cmdEnv) int {
	fs := newFlags("serve", "relayq serve [-c FILE]", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "relayq serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	// A write to a broken stderr (its reader gone: `relayq serve 2>&1 |
	// head`, a journald restart) would otherwise kill the daemon with
	// SIGPIPE, as Go does for fds 1 and 2: the log line is lost instead.
	signal.Ignore(syscall.SIGPIPE)
	// SIGHUP reloads the configuration (reload.go); caught from the start,
	// so that one sent while relayq starts does not kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	stray := catchStraySignals()
	defer signal.Stop(stray)
	cfg, source, code := loadConfigSource(*cfgPath, env)
	if code != exitOK {
		return code
	}
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg.Log))
	out, closeLog, err := openLogOutput(cfg.Log, env.Stderr) // syslog.go
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq serve: %v\n", err)
		return exitUnavailable
	}
	defer closeLog()
	log := newLevelLogger(cfg.Log, level, out)
	go logStraySignals(stray, log)
	log.Info("relayq starting", "config", source, "settings", cfg)
	warnLooseSecrets(cfg, source, log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	tuneGC(ctx)          // gc.go
	releaseWhenIdle(ctx) // gc.go
	started := source
	rl := reloader{level: level, load: func() (*config.Config, string, error) {
		cfg, source, err := config.FindForReload(*cfgPath, env.Getenv, started)
		if err == nil {
			warnLooseSecrets(cfg, source, log)
		}
		return cfg, source, err
	}}
	var d *daemon
	inherited, err := inheritedListeners(cfg.Submission) // systemd.go
	if err == nil {
		d, err = startDaemon(cfg, log, rl, inherited)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq serve: %v\n", err)
		for _, hint := range []string{startupHint(err), stateDirHint(err, cfg.StateDir), maildropHint(cfg.Submission.Maildrop)} { // maintenance.go, statedir.go
			if hint != "" {
				fmt.Fprintf(env.Stderr, "relayq serve: %s\n", hint)
			}
		}
		return startupExitCode(err)
	}
	log.Info("relayq ready", "queue", cfg.Queue.Path, "socket", cfg.Submission.Socket, "listen", cfg.Submission.Listen, "relay", d.relay, "socket_activated", len(inherited) > 0)
	notify(log, sd.SdNotifyReady) // systemd.go
	ctx, damaged := stopOnDamage(ctx, d.q)
	d.reloadOn(ctx, hup) // reload.go
	log.Info("relayq stopping: no new mail accepted; letting deliveries in flight finish", "grace", cfg.Delivery.ShutdownTimeout.Duration)
	if err := d.stop(); err != nil {
		log.Error("shutdown", "err", err)
		return exitSoftware
	}
	if err := damaged(); err != nil {
		fmt.Fprintf(env.Stderr, "relayq serve: %v\nrelayq serve: %s\n", err, startupHint(err))
		return exitDataErr
	}
	log.Info("relayq stopped")
	return exitOK
}

// straySignals mean nothing to relayq serve, yet each would end it at once
// (Go's default for a signal nobody asked for), as a crash would: a
// `kill -USR1` meant for another daemon, or a logrotate script written
// for one that reopens its log on SIGUSR1. They are logged and ignored.
// The -tags pprof build takes USR1 and USR2 for itself (pprof.go).
var straySignals = []os.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM}

// profilingSignals is set by pprof.go when it has taken USR1 and USR2.
var profilingSignals bool

func catchStraySignals() chan os.Signal {
	stray := make(chan os.Signal, 8)
	for _, sig := range straySignals {
		if profilingSignals && sig != syscall.SIGALRM {
			continue
		}
		signal.Notify(stray, sig)
	}
	return stray
}

// logStraySignals logs each stray signal until stray is no longer
// written to (the process ends).
func logStraySignals(stray <-chan os.Signal, log *slog.Logger) {
	for sig := range stray {
		log.Warn("signal ignored: relayq serve reloads on SIGHUP and stops on SIGTERM or SIGINT", "signal", sig.String())
	}
}

// maildropHint says how many messages wait in the maildrop at dir when
// relayq fails to start: those intake acknowledged while it started (and
// sendmail's while it was down) are there, not lost, and the next start
// that opens the queue imports them. "" when there are none.
func maildropHint(dir string) string {
	n, err := spool.PendingMaildrop(dir)
	if err != nil || n == 0 {
		return ""
	}
	what := fmt.Sprintf("%d messages wait", n)
	if n == 1 {
		what = "1 message waits"
	}
	return what + " in the maildrop " + dir + " (taken while relayq started, or by sendmail while it was down); the next start that opens the queue imports them"
}

// stopOnDamage returns a context that also ends when the walk of the queue
// file's pages after Open (queue/pagewalk.go) finds damage, and a function
// that says, once it has ended, whether that is why. relayq then stops as
// it does on SIGTERM and exits 65, as when the damage is found at Open.
func stopOnDamage(ctx context.Context, q *queue.Queue) (context.Context, func() error) {
	ctx, cancel := context.WithCancelCause(ctx)
	var found error
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case err := <-q.Damaged():
			found = err
			cancel(err)
		case <-ctx.Done():
		}
	}()
	return ctx, func() error {
		cancel(nil)
		<-watched
		return found
	}
}

// startupExitCode picks the sysexits code for a failure to start: the
// step that failed chose it (startErr); 71 for anything else.
func startupExitCode(err error) int {
	var se *startErr
	if errors.As(err, &se) {
		return se.code
	}
	return exitOSErr
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	return newLevelLogger(c, logLevel(c), w)
}

// newLevelLogger is newLogger at level, which the daemon's reload changes.
func newLevelLogger(c config.LogConfig, level slog.Leveler, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if c.Output == "syslog" {
		opts.ReplaceAttr = dropTime // syslog.go
	}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// logLevel is [log] level as a slog.Level.
func logLevel(c config.LogConfig) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by the config package
	return level
}
