package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"relayq/config"
	"relayq/control"
	"relayq/spool"
)

// runStatus is `relayq status [--json]`: the queue at a glance, and a
// monitoring check. It exits 1 when a [health] limit is exceeded, 69 when
// the daemon is not running (see exit.go); while it starts, it says so and
// exits 1.
func runStatus(args []string, env cmdEnv) int {
	fs := newFlags("status", "relayq status [-c FILE] [--json]\n"+
		"Exits 0 when healthy, 1 when the oldest deferred message is older than [health] max_queue_age\n"+
		"or more than [health] max_dead messages died in the last 24h (or while relayq is starting),\n"+
		"69 when the daemon is not running.", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	asJSON := fs.Bool("json", false, "print a JSON object instead of text")
	rest, code, done := parseArgs(fs, args, env)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(env.Stderr, "relayq status: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	cfg, code := loadConfig(*cfgPath, env)
	if code != exitOK {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, cfg.Control.Socket, control.Request{Op: control.OpStatus})
	if errors.Is(err, control.ErrNotRunning) && spool.Starting(ctx, cfg.Submission.Socket) {
		return printStarting(env, *asJSON)
	}
	if err != nil {
		return askFailed("status", resp, err, env) // ops.go
	}
	st := resp.Status
	if st == nil {
		fmt.Fprintln(env.Stderr, "relayq status: the daemon sent no status")
		return exitTempFail
	}
	problems := healthProblems(st, cfg.Health)
	if *asJSON {
		if e := printJSON(env, statusJSON(st, cfg.Queue.Path, problems)); e != exitOK {
			return e
		}
	} else {
		printStatus(env, st, cfg.Queue.Path, problems)
	}
	if len(problems) > 0 {
		return exitUnhealthy
	}
	return exitOK
}

// healthProblems lists the [health] limits st exceeds.
func healthProblems(st *control.Status, h config.HealthConfig) []string {
	var out []string
	if max := h.MaxQueueAge.Duration; max > 0 && st.OldestDeferred != nil {
		if a := st.Now.Sub(*st.OldestDeferred); a > max {
			out = append(out, fmt.Sprintf("oldest deferred message has waited %s, more than health.max_queue_age (%s)", a.Round(time.Second), h.MaxQueueAge))
		}
	}
	if st.Damaged > 0 {
		out = append(out, fmt.Sprintf("%d message record(s) damaged, never delivered: relayq queue list --state damaged", st.Damaged))
	}
	if st.DeadDamaged > 0 {
		out = append(out, fmt.Sprintf("%d dead letter record(s) damaged: relayq dead list", st.DeadDamaged))
	}
	if st.Space.Refusing {
		out = append(out, "intake refuses new mail (452 4.3.1): "+spaceText(st.Space))
	}
	if h.MaxDead > 0 && st.DeadLastDay > h.MaxDead {
		out = append(out, fmt.Sprintf("%d messages dead-lettered in the last 24h, more than health.max_dead (%d)", st.DeadLastDay, h.MaxDead))
	}
	return out
}

// statusOut is `relayq status --json`. Ages and the uptime are Go
// durations, to the second ("1h2m3s"), as durations are in the config and
// every --json output; an age is absent when there is no such message.
type statusOut struct {
	Healthy           bool                `json:"healthy"`
	Problems          []string            `json:"problems"`
	Messages          int                 `json:"messages"`
	Queued            int                 `json:"queued"`
	Deferred          int                 `json:"deferred"`
	Held              int                 `json:"held"`
	Active            int                 `json:"active"`
	Uncertain         int                 `json:"uncertain"`
	Damaged           int                 `json:"damaged"`
	RecipientsPending int                 `json:"recipients_pending"`
	BytesQueued       int64               `json:"bytes_queued"`
	OldestAge         *string             `json:"oldest_age,omitempty"`
	OldestDeferredAge *string             `json:"oldest_deferred_age,omitempty"`
	Dead              int                 `json:"dead"`
	DeadDamaged       int                 `json:"dead_damaged"`
	DeadLastDay       int                 `json:"dead_last_day"`
	Database          string              `json:"database"`
	DatabaseBytes     int64               `json:"database_bytes"`
	Space             control.SpaceStatus `json:"space"`
	Started           time.Time           `json:"started"`
	Uptime            string              `json:"uptime"`
	// Relays: each relay's state and last result, as the daemon has them.
	Relays []control.RelayStatus `json:"relays"`
	// Limits: what each submitter used of its [limits]; empty without
	// limits.
	Limits []control.LimitStatus `json:"limits"`
	// Memory: the message bodies intake holds now against
	// [submission] max_memory; absent without a budget.
	Memory *control.MemoryStatus `json:"memory,omitempty"`
}

func statusJSON(st *control.Status, db string, problems []string) statusOut {
	ageOf := func(t *time.Time) *string {
		if t == nil {
			return nil
		}
		s := st.Now.Sub(*t).Round(time.Second).String()
		return &s
	}
	if problems == nil {
		problems = []string{}
	}
	relays := st.Relays
	if relays == nil {
		relays = []control.RelayStatus{}
	}
	limits := st.Limits
	if limits == nil {
		limits = []control.LimitStatus{}
	}
	return statusOut{
		Relays:  relays,
		Limits:  limits,
		Memory:  st.Memory,
		Healthy: len(problems) == 0, Problems: problems,
		Messages: st.Queued + st.Deferred + st.Held + st.Active + st.Uncertain + st.Damaged,
		Queued:   st.Queued, Deferred: st.Deferred, Held: st.Held, Active: st.Active, Uncertain: st.Uncertain,
		Damaged: st.Damaged, RecipientsPending: st.Pending, BytesQueued: st.Bytes,
		OldestAge: ageOf(st.Oldest), OldestDeferredAge: ageOf(st.OldestDeferred),
		Dead: st.Dead, DeadDamaged: st.DeadDamaged, DeadLastDay: st.DeadLastDay, Database: db, DatabaseBytes: st.DBSize, Space: st.Space,
		Started: st.Started, Uptime: st.Now.Sub(st.Started).Round(time.Second).String(),
	}
}

func printStatus(env cmdEnv, st *control.Status, db string, problems []string) {
	w := env.Stdout
	field := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-14s%s\n", name+":", fmt.Sprintf(format, args...))
	}
	field("Daemon", "running since %s (up %s)", st.Started.Local().Format(time.DateTime), st.Now.Sub(st.Started).Round(time.Second))
	damaged := ""
	if st.Damaged > 0 {
		damaged = fmt.Sprintf(", %d damaged", st.Damaged)
	}
	field("Queue", "%d message(s): %d queued, %d deferred, %d uncertain, %d held, %d active%s",
		st.Queued+st.Deferred+st.Uncertain+st.Held+st.Active+st.Damaged, st.Queued, st.Deferred, st.Uncertain, st.Held, st.Active, damaged)
	ageText := func(t *time.Time) string {
		if t == nil {
			return "none"
		}
		return st.Now.Sub(*t).Round(time.Second).String()
	}
	field("Pending", "%d recipient(s), %s of messages", st.Pending, byteSize(st.Bytes))
	field("Oldest", "%s (oldest deferred: %s)", ageText(st.Oldest), ageText(st.OldestDeferred))
	deadDamaged := ""
	if st.DeadDamaged > 0 {
		deadDamaged = fmt.Sprintf(", %d damaged", st.DeadDamaged)
	}
	field("Dead letters", "%d (%d in the last 24h%s)", st.Dead, st.DeadLastDay, deadDamaged)
	field("Database", "%s, %s", db, byteSize(st.DBSize))
	intake := "accepting mail"
	if st.Space.Refusing {
		intake = "REFUSING new mail (452 4.3.1)"
	}
	field("Free space", "%s; %s", spaceText(st.Space), intake)
	if m := st.Memory; m != nil {
		field("Memory", "%s of %s in message bodies being received", byteSize(m.InFlight), byteSize(m.Max))
	}
	for _, r := range st.Relays {
		field("Relay", "%s: %s", r.Relay, relayState(r, st.Now))
		field("Last result", "%s", lastResult(r, st.Now))
	}
	for _, l := range st.Limits {
		field("Limit", "%s: %s", l.Submitter, limitUse(l, st.Now))
	}
	if len(problems) == 0 {
		field("Health", "ok")
		return
	}
	for _, p := range problems {
		field("Health", "PROBLEM: %s", p)
	}
}

// relayState says how a relay is doing: "ok", "paused until … after N
// failure(s)", "probing …".
func relayState(r control.RelayStatus, now time.Time) string {
	switch r.State {
	case "paused":
		until := "a while"
		if r.PausedUntil != nil {
			until = fmt.Sprintf("%s (in %s)", r.PausedUntil.Local().Format(time.DateTime), r.PausedUntil.Sub(now).Round(time.Second))
		}
		return fmt.Sprintf("paused until %s after %d failure(s)", until, r.Failures)
	case "probing":
		return fmt.Sprintf("probing, one message at a time, after %d failure(s)", r.Failures)
	}
	return r.State
}

// lastResult is the relay's last answer, when it came: "2025-… (3s ago):
// 421 4.3.2 text (in reply to greeting)".
func lastResult(r control.RelayStatus, now time.Time) string {
	if r.LastReply == nil || r.LastAttempt == nil {
		return "no attempt yet"
	}
	return fmt.Sprintf("%s (%s ago): %s", r.LastAttempt.Local().Format(time.DateTime),
		now.Sub(*r.LastAttempt).Round(time.Second), oneLine(r.LastReply.String()))
}

// limitUse says what a submitter used of its limits: "2 of 100 message(s)
// in the last hour, 1.2 MiB of 10.0 MiB queued, 3 refused (the last at …)".
func limitUse(l control.LimitStatus, now time.Time) string {
	var parts []string
	if n := l.MessagesLastHour; n != nil {
		if l.MessagesPerHour > 0 {
			parts = append(parts, fmt.Sprintf("%d of %d message(s) in the last hour", *n, l.MessagesPerHour))
		} else {
			parts = append(parts, fmt.Sprintf("%d message(s) in the last hour", *n))
		}
	}
	if b := l.QueuedBytes; b != nil {
		if l.QueuedBytesLimit > 0 {
			parts = append(parts, fmt.Sprintf("%s of %s queued", byteSize(*b), byteSize(l.QueuedBytesLimit)))
		} else {
			parts = append(parts, byteSize(*b)+" queued")
		}
	}
	refused := "none refused"
	if l.Refused > 0 && l.LastRefused != nil {
		refused = fmt.Sprintf("%d refused since start (the last at %s, %s ago)", l.Refused,
			l.LastRefused.Local().Format(time.DateTime), now.Sub(*l.LastRefused).Round(time.Second))
	}
	return strings.Join(append(parts, refused), ", ")
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// spaceText says how much room the queue has: "1.2 GiB free on the
// queue's file system, 3.0 MiB inside the queue file, min_free 50.0 MiB,
// reserve 8.0 MiB".
func spaceText(sp control.SpaceStatus) string {
	if sp.Err != "" {
		return "unknown (" + sp.Err + ")"
	}
	text := fmt.Sprintf("%s free on the queue's file system, %s inside the queue file", byteSize(sp.Free), byteSize(sp.FileFree))
	if sp.MinFree == 0 {
		return text + ", no min_free"
	}
	text += ", min_free " + byteSize(sp.MinFree)
	if sp.Reserve == 0 {
		return text + ", reserve used up"
	}
	return text + ", reserve " + byteSize(sp.Reserve)
}

// printStarting says that relayq is starting: the control socket does not
// answer yet, and intake keeps what it takes in the maildrop while the
// queue opens (spool/starting.go). Not healthy yet: exit 1.
func printStarting(env cmdEnv, asJSON bool) int {
	if asJSON {
		if e := printJSON(env, map[string]bool{"starting": true}); e != exitOK {
			return e
		}
	} else {
		fmt.Fprintln(env.Stdout, "relayq is starting: the queue is opening; mail submitted meanwhile is kept in the maildrop and queued once it is open")
	}
	return exitUnhealthy
}
