package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"relayq"
	"relayq/queue"
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
	cfg, source, code := loadConfigSource(*cfgPath, env)
	if code != exitOK {
		return code
	}
	log := newLogger(cfg.Log, env.Stderr)
	log.Info("relayq starting", "config", source, "settings", cfg)
	warnLooseSecrets(cfg, source, log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	tuneGC(ctx) // gc.go
	d, err := startDaemon(cfg, log)
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq serve: %v\n", err)
		for _, hint := range []string{startupHint(err), stateDirHint(err, cfg.StateDir)} { // maintenance.go, statedir.go
			if hint != "" {
				fmt.Fprintf(env.Stderr, "relayq serve: %s\n", hint)
			}
		}
		return startupExitCode(err)
	}
	log.Info("relayq ready", "queue", cfg.Queue.Path, "socket", cfg.Submission.Socket, "listen", cfg.Submission.Listen, "relay", d.relay)
	<-ctx.Done()
	log.Info("relayq stopping: no new mail accepted; letting deliveries in flight finish", "grace", cfg.Delivery.ShutdownTimeout.Duration)
	if err := d.stop(); err != nil {
		log.Error("shutdown", "err", err)
		return exitSoftware
	}
	log.Info("relayq stopped")
	return exitOK
}

// startupExitCode picks the sysexits code for a failure to start.
func startupExitCode(err error) int {
	if errors.Is(err, queue.ErrLocked) {
		return exitTempFail
	}
	if errors.Is(err, queue.ErrDamaged) {
		return exitDataErr
	}
	var cfgErr *configError
	if errors.As(err, &cfgErr) {
		return exitConfig
	}
	return exitOSErr
}

func newLogger(c relayq.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by the config package
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
