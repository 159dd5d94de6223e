package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"relayq/config"
	"relayq/control"
	"relayq/delivery"
)

// Reloading the configuration: SIGHUP, or `relayq reload` over the control
// socket (which also hears whether the new file was taken). The file is
// read and checked as at start; a file that does not load, an empty file
// (caught between a truncate and a write: config.FindForReload), the
// system file relayq started with gone, or a [relay] the transport cannot
// be built from, is refused with an ERROR line and the configuration in
// force stays. Otherwise these take effect at once:
//
//   - [relay], [[relays]] and [[routes]], credentials files included (pass_file and the other _file
//     keys are read again), TLS, pool and rate settings: attempts that start
//     from now on use a new transport; those in flight finish on the old
//     one, whose connections are then closed;
//   - [retry] and [delivery] uncertain: for the next outcome recorded;
//   - [limits]: for the next MAIL FROM, with the counts so far kept;
//   - [rewrite], [aliases] (its aliases_file read again) and [defaults]:
//     for the next RCPT and message, and the next maildrop file;
//   - [log] level.
//
// Everything else (state_dir, [queue], [submission], [control], [delivery]
// workers and timeouts, [notify], [log] format, output and syslog keys) is
// fixed by what was opened at start: a change to it is logged as a warning
// naming the key, and the old value stays until the next restart. Sockets
// and queued mail are never touched.

// reloader is how the daemon reads its configuration again, and the log
// level it may change.
type reloader struct {
	load  func() (cfg *config.Config, source string, err error)
	level *slog.LevelVar
}

// errReloadBusy is returned by reload while relayq is starting or stopping.
var errReloadBusy = errors.New("relayq is starting or stopping; try again")

// reloadOn reloads at each signal on hup until ctx ends.
func (d *daemon) reloadOn(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-hup:
			_ = d.reload() // logs what it did, or why not
		case <-ctx.Done():
			return
		}
	}
}

// reload reads the configuration again and applies it; the error (also
// logged) is why it was refused.
func (d *daemon) reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	dv := d.deliverer.Load()
	if d.stopping || dv == nil || d.rl.load == nil {
		return errReloadBusy
	}
	// systemd shows the unit as reloading meanwhile (systemd.go); the
	// daemon is ready again afterwards, with the new file or the old one.
	notify(d.log, sd.SdNotifyReloading)
	defer notify(d.log, sd.SdNotifyReady)
	cfg, source, err := d.rl.load()
	if err != nil {
		d.log.Error("reload refused; the configuration in force stays", "err", err)
		return err
	}
	rs, err := relaySet(cfg, d.log) // routing.go
	if err != nil {
		err = fmt.Errorf("%s: relay: %w", source, err)
		d.log.Error("reload refused; the configuration in force stays", "err", err)
		return err
	}
	rw, err := newRewriting(cfg, d.log) // rewrite.go: the aliases file is read again
	if err != nil {
		err = fmt.Errorf("%s: %w", source, err)
		d.log.Error("reload refused; the configuration in force stays", "err", err)
		return err
	}
	relay := relayNames(rs)
	for _, key := range restartKeys(d.cfg, cfg) {
		d.log.Warn("reload: this setting changes only when relayq restarts; the old value stays in force", "key", key)
	}
	dv.SetRelay(rs)
	d.intake.SetLimits(intakeLimits(cfg.Limits)) // daemon_policy.go
	d.intake.SetRewriting(rw)
	if d.rl.level != nil {
		d.rl.level.Set(logLevel(cfg.Log))
	}
	d.log.Info("configuration reloaded", "config", source, "relay", relay, "settings", cfg)
	return nil
}

// restartKeys lists the dotted keys whose value differs between the
// configuration in force (old) and the new one, leaving out those reload
// applies and [health] (which `relayq status` reads from the file itself).
func restartKeys(old, cfg *config.Config) []string {
	a, b := *old, *cfg
	for _, c := range []*config.Config{&a, &b} {
		c.Relay, c.Retry, c.Limits, c.Health = config.RelayConfig{}, config.RetryConfig{}, config.LimitsConfig{}, config.HealthConfig{}
		c.Rewrite, c.Aliases, c.Defaults = config.RewriteConfig{}, config.AliasesConfig{}, config.DefaultsConfig{}
		c.Relays, c.Routes, c.RelayTable = nil, nil, false
		c.Log.Level, c.Delivery.Uncertain = "", ""
	}
	return changedKeys("", reflect.ValueOf(a), reflect.ValueOf(b))
}

// changedKeys walks two values of the same type by their toml tags and
// returns the dotted keys that differ. A struct without toml tags
// (Duration) is one value.
func changedKeys(key string, a, b reflect.Value) []string {
	if a.Kind() != reflect.Struct || !hasTOMLKeys(a.Type()) {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return nil
		}
		return []string{key}
	}
	var out []string
	for i := range a.NumField() {
		name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if key != "" {
			name = key + "." + name
		}
		out = append(out, changedKeys(name, a.Field(i), b.Field(i))...)
	}
	return out
}

func hasTOMLKeys(t reflect.Type) bool {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("toml") != "" {
			return true
		}
	}
	return false
}

// retryPolicy turns [retry] into delivery's RetryPolicy.
func retryPolicy(r config.RetryConfig) delivery.RetryPolicy {
	return delivery.RetryPolicy{
		InitialInterval: r.InitialInterval.Duration,
		Multiplier:      r.Multiplier,
		MaxInterval:     r.MaxInterval.Duration,
		MaxLifetime:     r.MaxLifetime.Duration,
	}
}

// runReload is `relayq reload`: the daemon reads its configuration again
// and answers whether it took it.
func runReload(args []string, env cmdEnv) int {
	fs := newFlags("reload", "relayq reload [-c FILE]\n"+
		"Makes the running daemon read its configuration file again, as SIGHUP does. Exits 0 when the new\n"+
		"configuration is in force, 78 when it was refused (the error says why; the old one stays in force),\n"+
		"69 when the daemon is not running.", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	if code := noArgs("reload", fs, args, env); code >= 0 {
		return code
	}
	if _, code := ask("reload", *cfgPath, control.Request{Op: control.OpReload}, env); code != exitOK {
		return code
	}
	fmt.Fprintln(env.Stdout, "relayq reload: the new configuration is in force (settings that need a restart are in the daemon's log)")
	return exitOK
}
