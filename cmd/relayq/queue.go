package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"relayq/control"
	"relayq/queue"
)

// runQueue is `relayq queue list [--json]`: the queued messages, as the
// running daemon sees them.
func runQueue(args []string, env cmdEnv) int {
	return runList("queue", control.OpQueueList, args, env)
}

// runDead is `relayq dead list [--json]`: the dead letters.
func runDead(args []string, env cmdEnv) int {
	return runList("dead", control.OpDeadList, args, env)
}

func runList(name, op string, args []string, env cmdEnv) int {
	fs := newFlags(name, "relayq "+name+" list [-c FILE] [--json]", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	if len(args) == 0 || args[0] != "list" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fs.SetOutput(env.Stdout)
			fs.Usage()
			return exitOK
		}
		fmt.Fprintf(env.Stderr, "relayq %s: the only operation so far is \"list\"\n", name)
		fs.Usage()
		return exitUsage
	}
	if code, done := parseFlags(fs, args[1:], env); done {
		return code
	}
	cfg, code := loadConfig(*cfgPath, env)
	if code != exitOK {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, cfg.Control.Socket, control.Request{Op: op})
	if err != nil {
		fmt.Fprintf(env.Stderr, "relayq %s: %v\n", name, err)
		if errors.Is(err, control.ErrNotRunning) {
			return exitUnavailable
		}
		return exitTempFail
	}
	var items []listItem
	for _, m := range resp.Messages {
		items = append(items, messageItem(m))
	}
	for _, d := range resp.Dead {
		items = append(items, deadItem(d))
	}
	if *asJSON {
		if items == nil {
			items = []listItem{}
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(items); err != nil {
			return exitIOErr
		}
		return exitOK
	}
	printTable(env.Stdout, items, op == control.OpDeadList)
	return exitOK
}

// listItem is one message in `list --json`: a stable, documented shape that
// scripts may parse.
type listItem struct {
	ID          string      `json:"id"`
	From        string      `json:"from"`
	Recipients  []rcptItem  `json:"recipients"`
	Attempts    int         `json:"attempts"`
	NextAttempt *time.Time  `json:"next_attempt"`
	Created     time.Time   `json:"created"`
	Died        *time.Time  `json:"died,omitempty"`
	Size        int64       `json:"size"`
	Submitter   submitterJS `json:"submitter"`
}

type rcptItem struct {
	Address     string     `json:"address"`
	Status      string     `json:"status"`
	Attempts    int        `json:"attempts"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	LastReply   string     `json:"last_reply"`
	ReplyCode   int        `json:"reply_code,omitempty"`
	Enhanced    string     `json:"enhanced_code,omitempty"`
}

type submitterJS struct {
	UID int    `json:"uid"`
	Via string `json:"via,omitempty"`
}

func rcptItems(rs []queue.Recipient) []rcptItem {
	out := make([]rcptItem, 0, len(rs))
	for _, r := range rs {
		it := rcptItem{Address: r.Address, Status: string(r.Status), Attempts: r.Attempts, LastReply: r.LastReply.String()}
		if !r.NextAttempt.IsZero() {
			t := r.NextAttempt
			it.NextAttempt = &t
		}
		if r.LastReply != nil {
			it.ReplyCode, it.Enhanced = r.LastReply.Code, r.LastReply.Enhanced
		}
		out = append(out, it)
	}
	return out
}

func messageItem(m *queue.Message) listItem {
	next := m.NextAttempt
	return listItem{
		ID: m.ID, From: m.From, Recipients: rcptItems(m.Recipients), Attempts: m.Attempts,
		NextAttempt: &next, Created: m.Created, Size: m.Size,
		Submitter: submitterJS{UID: m.Submitter.UID, Via: m.Submitter.Via},
	}
}

func deadItem(d *queue.DeadLetter) listItem {
	died := d.Died
	return listItem{
		ID: d.ID, From: d.From, Recipients: rcptItems(d.Recipients), Attempts: d.Attempts,
		Created: d.Created, Died: &died, Size: d.Size,
		Submitter: submitterJS{UID: d.Submitter.UID, Via: d.Submitter.Via},
	}
}

// printTable prints one line per message and one indented line per
// recipient with its state and last reply.
func printTable(w io.Writer, items []listItem, dead bool) {
	if len(items) == 0 {
		if dead {
			fmt.Fprintln(w, "No dead letters.")
		} else {
			fmt.Fprintln(w, "Queue is empty.")
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	when := "NEXT ATTEMPT"
	if dead {
		when = "DIED"
	}
	fmt.Fprintf(tw, "ID\tAGE\tSIZE\tATTEMPTS\t%s\tFROM\n", when)
	for _, it := range items {
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
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", it.ID, time.Since(it.Created).Round(time.Second), it.Size, it.Attempts, t, from)
		for _, r := range it.Recipients {
			reply := r.LastReply
			if reply == "" {
				reply = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t\t\t\t%s\n", r.Address, r.Status, strings.ReplaceAll(reply, "\n", " "))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d message(s)\n", len(items))
}
