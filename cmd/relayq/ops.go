package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"relayq/control"
	"relayq/queue"
)

// The queue and dead-letter commands. None of them opens the database: they
// ask the running daemon over the control socket, and the daemon makes the
// change in one commit. Exit codes are listed in exit.go.

// subcommand is one operation of `relayq queue` or `relayq dead`.
type subcommand struct {
	name    string
	summary string
	run     func(args []string, env cmdEnv) int
}

var queueCommands = []subcommand{
	{"list", "list queued messages [--state queued|deferred|uncertain|held|active|damaged]", runQueueList},
	{"status", "where one message is: queued … delivered (relay's queue ID), dead, also after it left", runQueueStatus},
	{"show", "show one message: envelope, recipients, attempt history [--body]", runShow("queue show", control.OpQueueShow)},
	{"retry", "make messages due now (ID… or --all; `relayq flush` is --all)", runChange(queueRetry)},
	{"hold", "put messages on hold: never delivered until released", runChange(queueHold)},
	{"release", "release held messages", runChange(queueRelease)},
	{"delete", "delete messages for good", runChange(queueDelete)},
	{"expire", "dead-letter messages now", runChange(queueExpire)},
	{"check", "check the queue file's integrity (daemon stopped; read-only)", runQueueCheck},
}

var deadCommands = []subcommand{
	{"list", "list dead letters", runDeadList},
	{"show", "show one dead letter with its replies and history [--body]", runShow("dead show", control.OpDeadShow)},
	{"requeue", "put dead recipients back into the queue (ID…, --all or --reply-class 5.7.x)", runChange(deadRequeue)},
	{"purge", "delete dead letters for good (ID…, or all [--older-than DURATION])", runChange(deadPurge)},
}

// runQueue is `relayq queue SUBCOMMAND`.
func runQueue(args []string, env cmdEnv) int { return dispatch("queue", queueCommands, args, env) }

// runDead is `relayq dead SUBCOMMAND`.
func runDead(args []string, env cmdEnv) int { return dispatch("dead", deadCommands, args, env) }

// runFlush is `relayq flush`, `relayq queue retry --all` by its Postfix
// name (postqueue -f).
func runFlush(args []string, env cmdEnv) int {
	return runChange(flushAll)(args, env)
}

func dispatch(name string, cmds []subcommand, args []string, env cmdEnv) int {
	if len(args) > 0 {
		for _, c := range cmds {
			if c.name == args[0] {
				return c.run(args[1:], env)
			}
		}
	}
	help := len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help")
	w := env.Stderr
	if help {
		w = env.Stdout
	} else if len(args) > 0 {
		fmt.Fprintf(w, "relayq %s: unknown operation %q\n", name, args[0])
	}
	fmt.Fprintf(w, "usage: relayq %s OPERATION [-c FILE] [--json] [ARGS]\n", name)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "`relayq %s OPERATION --help` tells more. Exit codes: 0 done, 64 usage,\n65 not held (release) or damaged record (only delete and expire work on it),\n66 no such ID (or not of this kind: dead show of a queued message), 69 daemon not running,\n75 message busy (being delivered) or held, 77 not allowed.\n", name)
	if help {
		return exitOK
	}
	return exitUsage
}

// parseArgs parses flags wherever they are among the arguments (`queue
// hold ID --json`), returning the others in order.
func parseArgs(fs *flag.FlagSet, args []string, env cmdEnv) (rest []string, code int, done bool) {
	for {
		if code, done := parseFlags(fs, args, env); done {
			return nil, code, true
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, exitOK, false
		}
		if args[0] == "--" {
			return append(rest, args[1:]...), exitOK, false
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

// ask loads the configuration at cfgPath ("" for the default search) and
// sends req to the daemon it names. On failure it prints why and returns
// the exit code.
func ask(name, cfgPath string, req control.Request, env cmdEnv) (*control.Response, int) {
	cfg, code := loadConfig(cfgPath, env)
	if code != exitOK {
		return nil, code
	}
	return askSocket(name, cfg.Control.Socket, req, env)
}

func askSocket(name, socket string, req control.Request, env cmdEnv) (*control.Response, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, socket, req)
	if err == nil {
		return resp, exitOK
	}
	return nil, askFailed(name, resp, err, env)
}

// askFailed reports a failed control call and picks its exit code.
func askFailed(name string, resp *control.Response, err error, env cmdEnv) int {
	fmt.Fprintf(env.Stderr, "relayq %s: %v\n", name, err)
	switch {
	case errors.Is(err, control.ErrNotRunning):
		return exitUnavailable
	case errors.Is(err, control.ErrDenied):
		return exitNoPerm
	case resp == nil:
		return exitTempFail
	}
	return codeExit(resp.Code)
}

// codeExit maps a control Code to an exit status.
func codeExit(code string) int {
	switch code {
	case "":
		return exitOK
	case control.CodeNotFound:
		return exitNoInput
	case control.CodeBadRequest:
		return exitUsage
	case control.CodeDenied:
		return exitNoPerm
	case control.CodeNotHeld, control.CodeDamaged:
		return exitDataErr
	case control.CodeConfig:
		return exitConfig
	}
	return exitTempFail // leased, held, internal
}

func printJSON(env cmdEnv, v any) int {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitIOErr
	}
	return exitOK
}

// age renders how long ago t was, to the second.
func age(t time.Time) string {
	return time.Since(t).Round(time.Second).String()
}

// change describes one of the commands that change the queue.
type change struct {
	name  string // as in messages: "queue hold"
	op    string
	args  string // synopsis after the flags
	help  string
	done  string // what happened to a message: "held"
	all   bool   // takes --all
	class bool   // takes --reply-class
	age   bool   // takes --older-than
	noIDs bool   // takes no IDs (flush)
}

var (
	queueRetry = change{name: "queue retry", op: control.OpQueueRetry, args: "ID…|--all", done: "due now", all: true,
		help: "Make messages due now, whatever their backoff said (postqueue -i / -f). Attempt counts stay."}
	flushAll = change{name: "flush", op: control.OpQueueRetry, args: "", done: "due now", noIDs: true,
		help: "Make every queued message that is neither held nor being delivered due now (postqueue -f)."}
	queueHold = change{name: "queue hold", op: control.OpQueueHold, args: "ID…", done: "held",
		help: "Put messages on hold (postsuper -h): they are never delivered until released, across restarts."}
	queueRelease = change{name: "queue release", op: control.OpQueueRelease, args: "ID…", done: "released",
		help: "Release held messages (postsuper -H); each is due at the next attempt time it had."}
	queueDelete = change{name: "queue delete", op: control.OpQueueDelete, args: "ID…", done: "deleted",
		help: "Delete messages for good (postsuper -d). The daemon logs who deleted what."}
	queueExpire = change{name: "queue expire", op: control.OpQueueExpire, args: "ID…", done: "expired",
		help: "Dead-letter messages now, with the reply \"expired by operator\"."}
	deadRequeue = change{name: "dead requeue", op: control.OpDeadRequeue, args: "ID…|--all|--reply-class CLASS", done: "requeued", all: true, class: true,
		help: "Put dead recipients back into the queue, due now, with their attempt counts reset and the history kept\n" +
			"(postsuper -r). With --reply-class only those whose last reply is in the class: 5.7.x, 5.x.x, 550, 55x."}
	deadPurge = change{name: "dead purge", op: control.OpDeadPurge, args: "ID…|--all|--older-than DURATION", done: "purged", all: true, age: true,
		help: "Delete dead letters for good: the IDs given, every one (--all, as Postfix's postsuper -d ALL),\nor those that died at least DURATION ago."}
)

// runChange returns the command for c.
func runChange(c change) func(args []string, env cmdEnv) int {
	return func(args []string, env cmdEnv) int {
		fs := newFlags(c.name, fmt.Sprintf("relayq %s [-c FILE] [--json] %s\n%s", c.name, c.args, c.help), env)
		cfgPath := fs.String("c", "", "configuration `file`")
		asJSON := fs.Bool("json", false, "print the results as JSON")
		all, class, olderThan := new(bool), new(string), new(time.Duration)
		if c.all {
			all = fs.Bool("all", false, "every message")
		}
		if c.class {
			class = fs.String("reply-class", "", "only recipients whose last reply is in this `class` (5.7.x, 550, 5xx)")
		}
		if c.age {
			olderThan = fs.Duration("older-than", 0, "only dead letters that died at least this `duration` ago (720h)")
		}
		ids, code, done := parseArgs(fs, args, env)
		if done {
			return code
		}
		req, code := c.request(ids, *all, *class, *olderThan, env)
		if code != exitOK {
			fs.Usage()
			return code
		}
		resp, code := ask(c.name, *cfgPath, req, env)
		if code != exitOK {
			return code
		}
		return c.report(resp, req, *asJSON, env)
	}
}

// request checks the arguments and builds the control request.
func (c change) request(ids []string, all bool, class string, olderThan time.Duration, env cmdEnv) (control.Request, int) {
	req := control.Request{Op: c.op, IDs: ids, All: all || c.noIDs, Class: class, OlderThan: olderThan}
	usage := func(format string, args ...any) (control.Request, int) {
		fmt.Fprintf(env.Stderr, "relayq %s: %s\n", c.name, fmt.Sprintf(format, args...))
		return req, exitUsage
	}
	for _, id := range ids {
		if !queue.ValidID(id) {
			return usage("%q is not a queue ID", id)
		}
	}
	if class != "" {
		if _, err := queue.ParseReplyClass(class); err != nil {
			return usage("%v", err)
		}
		req.All = len(ids) == 0
	}
	switch {
	case c.noIDs && len(ids) > 0:
		return usage("takes no IDs")
	case req.All && len(ids) > 0:
		return usage("give IDs or --all, not both")
	case olderThan < 0:
		return usage("--older-than must not be negative")
	case olderThan > 0 && len(ids) > 0:
		return usage("give IDs or --older-than, not both")
	case !req.All && len(ids) == 0 && olderThan == 0 && c.age:
		return usage("which dead letters? give their IDs, --all or --older-than")
	case !req.All && len(ids) == 0 && olderThan == 0 && c.all:
		return usage("which messages? give their IDs or --all")
	case !req.All && len(ids) == 0 && olderThan == 0:
		return usage("which messages? give their IDs")
	}
	return req, exitOK
}

// report prints what the daemon did and returns the exit status: 0 when
// every ID was done, else 66 if one was unknown, else 75.
func (c change) report(resp *control.Response, req control.Request, asJSON bool, env cmdEnv) int {
	code := exitOK
	for _, r := range resp.Results {
		switch e := codeExit(r.Code); {
		case e == exitNoInput:
			code = exitNoInput
		case e != exitOK && code == exitOK:
			code = e
		}
	}
	if asJSON {
		out := struct {
			Op      string           `json:"op"`
			Results []control.Result `json:"results"`
			Purged  *int             `json:"purged,omitempty"`
			Due     *int             `json:"due,omitempty"`
		}{Op: c.name, Results: resp.Results}
		if out.Results == nil {
			out.Results = []control.Result{}
		}
		if req.Op == control.OpDeadPurge && len(req.IDs) == 0 {
			out.Purged = &resp.Purged
		}
		if req.Op == control.OpQueueRetry && req.All {
			out.Due = &resp.Due
		}
		if e := printJSON(env, out); e != exitOK {
			return e
		}
		return code
	}
	if req.Op == control.OpDeadPurge && len(req.IDs) == 0 {
		fmt.Fprintf(env.Stdout, "%d dead letter(s) purged\n", resp.Purged)
		return code
	}
	if req.Op == control.OpQueueRetry && req.All {
		fmt.Fprintf(env.Stdout, "%d message(s) %s\n", resp.Due, c.done) // counted, not listed: a million lines helped nobody
		return code
	}
	n := 0
	for _, r := range resp.Results {
		if r.Code == "" {
			fmt.Fprintf(env.Stdout, "%s: %s\n", r.ID, c.done)
			n++
		} else {
			fmt.Fprintf(env.Stderr, "relayq %s: %s: %s\n", c.name, r.ID, refusal(r, req))
		}
	}
	if len(resp.Results) != 1 {
		fmt.Fprintf(env.Stdout, "%d message(s) %s\n", n, c.done)
	}
	return code
}

// refusal explains in words why an ID was left alone.
func refusal(r control.Result, req control.Request) string {
	switch r.Code {
	case control.CodeLeased:
		return "being delivered right now; left alone (try again when the attempt is over)"
	case control.CodeHeld:
		return "on hold; release it first (relayq queue release)"
	case control.CodeNotHeld:
		return "not on hold; nothing to release"
	case control.CodeDamaged:
		if req.Op == control.OpDeadRequeue {
			return "its dead letter's record in the queue file is damaged (does not decode); only relayq dead purge works on it"
		}
		return "its record in the queue file is damaged (does not decode); only relayq queue delete or expire work on it"
	case control.CodeNotFound:
		switch {
		case req.Class != "":
			return "no such dead letter, or none of its recipients died with a reply in class " + req.Class
		case req.Op == control.OpDeadRequeue || req.Op == control.OpDeadPurge:
			return "no such dead letter"
		}
		return "no such message in the queue"
	}
	return r.Error
}

// printTableRows writes rows through a tabwriter.
func printTableRows(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, row := range rows {
		fmt.Fprintln(tw, join(row))
	}
	tw.Flush()
}

func join(row []string) string {
	row = slices.Clone(row)
	for i, cell := range row {
		if cell == "" {
			row[i] = "-"
		}
	}
	return strings.Join(row, "\t")
}
