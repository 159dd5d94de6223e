package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"relayq/control"
	"relayq/queue"
)

// runQueueList is `relayq queue list [--state STATE] [--json]`: the queued
// messages, as the running daemon sees them.
func runQueueList(args []string, env cmdEnv) int {
	return runList("queue list", control.OpQueueList, args, env)
}

// runDeadList is `relayq dead list [--json]`: the dead letters.
func runDeadList(args []string, env cmdEnv) int {
	return runList("dead list", control.OpDeadList, args, env)
}

func runList(name, op string, args []string, env cmdEnv) int {
	what, synopsis := "dead letters", "relayq "+name+" [-c FILE] [--limit N] [--after ID] [--rcpt PATTERN] [--older-than DURATION] [--json]"
	if op == control.OpQueueList {
		what = "messages"
		synopsis = "relayq " + name + " [-c FILE] [--state queued|deferred|uncertain|held|active|damaged]\n" +
			"       [--limit N] [--after ID] [--rcpt PATTERN] [--older-than DURATION] [--json]"
	}
	fs := newFlags(name, synopsis, env)
	cfgPath := fs.String("c", "", "configuration `file`")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	var state *string
	if op == control.OpQueueList {
		state = fs.String("state", "", "only messages in this `state`: queued, deferred, uncertain (maybe delivered), held, active\nor damaged (the record does not decode)")
	}
	pf := addPageFlags(fs, what)
	rest, code, done := parseArgs(fs, args, env)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(env.Stderr, "relayq %s: unexpected argument %q\n", name, rest[0])
		return exitUsage
	}
	req := control.Request{Op: op}
	if state != nil && *state != "" {
		if _, err := queue.ParseState(*state); err != nil {
			fmt.Fprintf(env.Stderr, "relayq %s: %v\n", name, err)
			return exitUsage
		}
		req.State = *state
	}
	req, bad := pf.request(req)
	if bad != "" {
		fmt.Fprintf(env.Stderr, "relayq %s: %s\n", name, bad)
		return exitUsage
	}
	cfg, code := loadConfig(*cfgPath, env)
	if code != exitOK {
		return code
	}
	call := func(req control.Request) (*control.Response, int) {
		return askSocket(name, cfg.Control.Socket, req, env)
	}
	dead := op == control.OpDeadList
	out := listOut{w: env.Stdout, dead: dead}
	each := out.table
	arr := &jsonArray{w: env.Stdout}
	if *asJSON {
		each = func(resp *control.Response) error {
			for _, it := range responseItems(resp) {
				if err := arr.add(it); err != nil {
					return err
				}
			}
			return nil
		}
	}
	l, code := pages(req, pf.limitFor(*asJSON), call, each)
	if *asJSON && (code == exitOK || arr.n > 0) {
		// After the last page, even after a failed one: what was printed
		// stays a whole array.
		if err := arr.end(); err != nil && code == exitOK {
			code = exitIOErr
		}
	}
	if code != exitOK {
		return code
	}
	more := ""
	if l.next != "" {
		more = moreText("relayq "+name, l.next)
	}
	if *asJSON {
		if more != "" {
			fmt.Fprintf(env.Stderr, "relayq %s: the first %d shown; %s\n", name, l.shown, more)
		}
		return exitOK
	}
	out.end(l, more, pf.filtered(req))
	return exitOK
}

// responseItems is a page of a listing as listItems.
func responseItems(resp *control.Response) []listItem {
	var items []listItem
	for _, m := range resp.Messages {
		items = append(items, messageItem(m))
	}
	for _, d := range resp.Dead {
		items = append(items, deadItem(d))
	}
	return items
}

// listOut prints a listing as a table, a page at a time.
type listOut struct {
	w    io.Writer
	dead bool
	n    int
}

func (o *listOut) table(resp *control.Response) error {
	items := responseItems(resp)
	if len(items) == 0 {
		return nil
	}
	printRows(o.w, items, o.dead, o.n == 0)
	o.n += len(items)
	return nil
}

// end prints the last line: how many were shown and, when the listing
// was cut short, how many there are and how to see the next ones.
func (o *listOut) end(l listed, more string, filtered bool) {
	switch {
	case o.n == 0 && more == "":
		printTable(o.w, nil, o.dead)
	case more == "":
		fmt.Fprintf(o.w, "%d message(s)\n", o.n)
	case filtered:
		fmt.Fprintf(o.w, "%d message(s) shown; more may match: %s\n", o.n, more)
	default:
		fmt.Fprintf(o.w, "%d of %d message(s) shown; %s\n", o.n, l.first.Total, more)
	}
}

// listItem is one message in `list --json`: a stable, documented shape that
// scripts may parse.
type listItem struct {
	ID    string `json:"id"`
	State string `json:"state,omitempty"` // queued, deferred, uncertain, held, active or damaged; absent for dead letters
	// Damaged says why the record does not decode (state damaged); such
	// an item has only its ID and the size of its stored body.
	Damaged     string      `json:"damaged,omitempty"`
	From        string      `json:"from"`
	Recipients  []rcptItem  `json:"recipients"`
	Attempts    int         `json:"attempts"`
	NextAttempt *time.Time  `json:"next_attempt"`
	Created     time.Time   `json:"created,omitzero"`
	Died        *time.Time  `json:"died,omitempty"`
	Reason      string      `json:"reason,omitempty"` // dead letters: corrupt or damaged, when no reply killed it
	Size        int64       `json:"size"`
	Submitter   submitterJS `json:"submitter"`
	submitter   string      // for the table (submitterShort)
}

type rcptItem struct {
	Address     string     `json:"address"`
	Status      string     `json:"status"`
	Attempts    int        `json:"attempts"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	// LastReply is the relay's last reply, {code, enhanced, lines} as in
	// every --json output (code 0 for a local failure: a refused
	// connection); absent before the first attempt.
	LastReply *queue.Reply `json:"last_reply,omitempty"`
}

// submitterJS is who submitted a message: uid (-1 unknown), user name
// and systemd unit when known, and the way in (socket, tcp, maildrop,
// notice).
type submitterJS struct {
	UID  int    `json:"uid"`
	User string `json:"user,omitempty"`
	Unit string `json:"unit,omitempty"`
	Via  string `json:"via,omitempty"`
	Addr string `json:"addr,omitempty"`
}

func submitterItem(s queue.Submitter) submitterJS {
	return submitterJS{UID: s.UID, User: s.User, Unit: s.Unit, Via: s.Via, Addr: s.Addr}
}

func rcptItems(rs []queue.Recipient) []rcptItem {
	out := make([]rcptItem, 0, len(rs))
	for _, r := range rs {
		it := rcptItem{Address: r.Address, Status: string(r.Status), Attempts: r.Attempts, LastReply: r.LastReply}
		if !r.NextAttempt.IsZero() {
			t := r.NextAttempt
			it.NextAttempt = &t
		}
		out = append(out, it)
	}
	return out
}

func messageItem(m *queue.Message) listItem {
	if m.Damaged != "" {
		return listItem{ID: m.ID, State: string(queue.StateDamaged), Damaged: m.Damaged, Size: m.Size,
			Recipients: []rcptItem{}, Submitter: submitterJS{UID: -1}}
	}
	next := m.NextAttempt
	return listItem{
		ID: m.ID, State: string(m.State()), From: m.From, Recipients: rcptItems(m.Recipients), Attempts: m.Attempts,
		NextAttempt: &next, Created: m.Created, Size: m.Size, submitter: submitterShort(m.Submitter),
		Submitter: submitterItem(m.Submitter),
	}
}

func deadItem(d *queue.DeadLetter) listItem {
	if d.Damaged != "" {
		return listItem{ID: d.ID, Damaged: d.Damaged, Size: d.Size, Recipients: []rcptItem{}, Submitter: submitterJS{UID: -1}}
	}
	died := d.Died
	return listItem{
		ID: d.ID, From: d.From, Recipients: rcptItems(d.Recipients), Attempts: d.Attempts,
		Created: d.Created, Died: &died, Reason: d.Reason, Size: d.Size, submitter: submitterShort(d.Submitter),
		Submitter: submitterItem(d.Submitter),
	}
}

// printTable prints one line per message and one indented line per
// recipient with its state and last reply, then how many there were.
func printTable(w io.Writer, items []listItem, dead bool) {
	if len(items) == 0 {
		if dead {
			fmt.Fprintln(w, "No dead letters.")
		} else {
			fmt.Fprintln(w, "Queue is empty.")
		}
		return
	}
	printRows(w, items, dead, true)
	fmt.Fprintf(w, "%d message(s)\n", len(items))
}

// printRows prints the table's lines for items, after its header when
// header is set.
func printRows(w io.Writer, items []listItem, dead, header bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	when := "NEXT ATTEMPT"
	if dead {
		when = "DIED"
	}
	if header {
		fmt.Fprintf(tw, "ID\tSTATE\tAGE\tSIZE\tATTEMPTS\t%s\tFROM\tSUBMITTER\n", when)
	}
	for _, it := range items {
		if it.Damaged != "" {
			state, what := it.State, "relayq queue delete or expire it"
			if dead {
				state, what = "dead (damaged)", "relayq dead purge it"
			}
			fmt.Fprintf(tw, "%s\t%s\t-\t%d\t-\t-\t-\t-\n", it.ID, state, it.Size)
			fmt.Fprintf(tw, "  record does not decode (%s); %s\n", oneLine(it.Damaged), what)
			continue
		}
		t := "-"
		if it.NextAttempt != nil {
			t = it.NextAttempt.Local().Format(time.DateTime)
		}
		if it.Died != nil {
			t = it.Died.Local().Format(time.DateTime)
		}
		from := it.From
		if from == "" {
			from = "<>"
		}
		state := it.State
		if state == "" {
			state = "dead"
			if it.Reason != "" {
				state += " (" + it.Reason + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", it.ID, state, age(it.Created), it.Size, it.Attempts, t, from, it.submitter)
		for _, r := range it.Recipients {
			reply := r.LastReply.String()
			if reply == "" {
				reply = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t\t\t%d\t\t%s\n", r.Address, r.Status, r.Attempts, strings.ReplaceAll(reply, "\n", " "))
		}
	}
	tw.Flush()
}
