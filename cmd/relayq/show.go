package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"relayq/control"
	"relayq/queue"
)

// runShow returns `relayq queue show ID [--body] [--json]` (or dead show):
// the envelope, each recipient's state and last reply, the dead letter if
// some recipients died, the attempt history and the transcript of the last
// attempt; --body adds the message.
func runShow(name, op string) func(args []string, env cmdEnv) int {
	return func(args []string, env cmdEnv) int {
		fs := newFlags(name, "relayq "+name+" [-c FILE] [--body] [--json] ID", env)
		cfgPath := fs.String("c", "", "configuration `file`")
		asJSON := fs.Bool("json", false, "print the record as JSON (the message text as the string \"body\")")
		body := fs.Bool("body", false, "print the message itself too")
		ids, code, done := parseArgs(fs, args, env)
		if done {
			return code
		}
		if len(ids) != 1 || !queue.ValidID(ids[0]) {
			fmt.Fprintf(env.Stderr, "relayq %s: give one queue ID\n", name)
			fs.Usage()
			return exitUsage
		}
		resp, code := ask(name, *cfgPath, control.Request{Op: op, IDs: ids, Body: *body}, env)
		if code != exitOK {
			return code
		}
		if *asJSON {
			out := struct {
				Message    *showMessage `json:"message,omitempty"`
				DeadLetter *showDead    `json:"dead_letter,omitempty"`
				Body       *string      `json:"body,omitempty"`
			}{Message: showMessageOf(resp.Message), DeadLetter: showDeadOf(resp.DeadLetter)}
			if *body {
				text := string(resp.Body)
				out.Body = &text
			}
			return printJSON(env, out)
		}
		printShow(env.Stdout, ids[0], resp)
		if *body {
			fmt.Fprintln(env.Stdout, "\n----- message -----")
			env.Stdout.Write(resp.Body)
		}
		return exitOK
	}
}

// showMessage is a message record in `show --json`: as stored, except
// that each attempt's duration is a Go duration string ("1.2s"), as every
// duration in the --json outputs is (the store keeps nanoseconds).
type showMessage struct {
	*queue.Message
	History []showAttempt `json:"history,omitempty"`
}

type showAttempt struct {
	queue.Attempt
	Duration string `json:"duration,omitempty"`
}

// showDead is a dead letter in `show --json`, its record as showMessage.
type showDead struct {
	*queue.DeadLetter
	Record *showMessage `json:"record,omitempty"`
}

func showMessageOf(m *queue.Message) *showMessage {
	if m == nil {
		return nil
	}
	out := &showMessage{Message: m}
	for _, a := range m.History {
		sa := showAttempt{Attempt: a}
		if a.Duration != 0 {
			sa.Duration = a.Duration.String()
		}
		out.History = append(out.History, sa)
	}
	return out
}

func showDeadOf(d *queue.DeadLetter) *showDead {
	if d == nil {
		return nil
	}
	return &showDead{DeadLetter: d, Record: showMessageOf(d.Record)}
}

func printShow(w io.Writer, id string, resp *control.Response) {
	m, d := resp.Message, resp.DeadLetter
	if m != nil && m.Damaged != "" || d != nil && d.Damaged != "" {
		printDamaged(w, id, m, d)
		return
	}
	var (
		from    string
		sub     queue.Submitter
		created time.Time
		size    int64
		history []queue.Attempt
	)
	switch {
	case m != nil:
		from, sub, created, size, history = m.From, m.Submitter, m.Created, m.Size, m.History
	case d.Record != nil:
		from, sub, created, size, history = d.From, d.Submitter, d.Created, d.Size, d.Record.History
	default:
		from, sub, created, size = d.From, d.Submitter, d.Created, d.Size
	}
	field := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-14s%s\n", name+":", fmt.Sprintf(format, args...))
	}
	field("Queue ID", "%s", id)
	if from == "" {
		from = "<>"
	}
	field("From", "%s", from)
	field("Created", "%s (%s ago)", created.Local().Format(time.DateTime), age(created))
	field("Size", "%d bytes", size)
	field("Submitter", "%s", submitterText(sub))
	if m != nil {
		printQueued(w, field, m)
	}
	if d != nil {
		fmt.Fprintln(w)
		field("Dead letter", "died %s (%s ago) after %d attempt(s)", d.Died.Local().Format(time.DateTime), age(d.Died), d.Attempts)
		if d.Reason != "" {
			field("Reason", "%s", deadReason(d.Reason))
		}
		printRecipients(w, d.Recipients, severalRelays(d.Recipients))
	}
	fmt.Fprintln(w)
	printHistory(w, created, history)
	printTranscript(w, history)
}

// printDamaged shows what can be shown of a message or dead letter whose
// record does not decode: that it is damaged and why, what to do, and the
// other record if that one is sound. --body still prints the stored body.
func printDamaged(w io.Writer, id string, m *queue.Message, d *queue.DeadLetter) {
	field := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-14s%s\n", name+":", fmt.Sprintf(format, args...))
	}
	field("Queue ID", "%s", id)
	if m != nil {
		if m.Damaged == "" {
			printQueued(w, field, m)
		} else {
			field("State", "damaged: the record in the queue file does not decode; it is not delivered")
			field("Problem", "%s", oneLine(m.Damaged))
			field("Created", "%s (%s ago; from its ID)", m.Created.Local().Format(time.DateTime), age(m.Created))
			field("Size", "%d bytes (of the stored body)", m.Size)
			field("What to do", "relayq queue expire %[1]s (keeps the body as a dead letter) or relayq queue delete %[1]s", id)
		}
	}
	switch {
	case d == nil:
	case d.Damaged != "":
		fmt.Fprintln(w)
		field("Dead letter", "damaged: its record in the queue file does not decode")
		field("Problem", "%s", oneLine(d.Damaged))
		field("What to do", "relayq dead show --body %[1]s to save the message, then relayq dead purge %[1]s", id)
	default:
		fmt.Fprintln(w)
		field("Dead letter", "died %s after %d attempt(s)", d.Died.Local().Format(time.DateTime), d.Attempts)
		printRecipients(w, d.Recipients, severalRelays(d.Recipients))
	}
}

// printTranscript prints the exchange with the relay of the last attempt
// (credentials were redacted before it was stored), indented, with control
// characters replaced so that a relay's text cannot drive the terminal.
func printTranscript(w io.Writer, history []queue.Attempt) {
	if len(history) == 0 || history[len(history)-1].Transcript == "" {
		return
	}
	a := history[len(history)-1]
	fmt.Fprintf(w, "\nTranscript of the last attempt (%s, %s):\n", a.Time.Local().Format(time.DateTime), a.Relay)
	for _, line := range strings.Split(a.Transcript, "\n") {
		fmt.Fprintf(w, "  %s\n", strings.Map(printable, line))
	}
}

func printable(r rune) rune {
	if r < ' ' && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 {
		return '\uFFFD'
	}
	return r
}

func printQueued(w io.Writer, field func(name, format string, args ...any), m *queue.Message) {
	state := string(m.State())
	if m.Held {
		state += " since " + m.HeldSince.Local().Format(time.DateTime)
	}
	field("State", "%s", state)
	var flags []string
	if m.UTF8 {
		flags = append(flags, "SMTPUTF8")
	}
	if m.EightBit {
		flags = append(flags, "8BITMIME")
	}
	if len(flags) > 0 {
		field("Options", "%s", strings.Join(flags, " "))
	}
	if !m.Requeued.IsZero() {
		field("Requeued", "%s", m.Requeued.Local().Format(time.DateTime))
	}
	field("Attempts", "%d", m.Attempts)
	if !m.Held && m.LeasedUntil.IsZero() {
		field("Next attempt", "%s", when(m.NextAttempt))
	}
	printRecipients(w, m.Recipients, severalRelays(m.Recipients))
}

// deadReason explains a dead letter's Reason.
func deadReason(reason string) string {
	switch reason {
	case queue.ReasonCorrupt:
		return "corrupt: the body no longer matched the checksum taken when it was queued, so it was not sent"
	case queue.ReasonDamaged:
		return "damaged: the message record did not decode; an operator expired it (the body is kept, the envelope is lost)"
	}
	return reason
}

func when(t time.Time) string {
	d := time.Until(t).Round(time.Second)
	if d <= 0 {
		return t.Local().Format(time.DateTime) + " (due now)"
	}
	return fmt.Sprintf("%s (in %s)", t.Local().Format(time.DateTime), d)
}

// submitterText names who submitted a message, for queue show: "uid 1000
// (alice), unit cron.service, via socket".
func submitterText(s queue.Submitter) string {
	if s.Via == queue.ViaNotice {
		return "relayq itself (a delivery status notification)"
	}
	var parts []string
	if s.UID >= 0 {
		uid := fmt.Sprintf("uid %d", s.UID)
		if s.User != "" {
			uid += " (" + s.User + ")"
		}
		parts = append(parts, uid)
	}
	if s.Unit != "" {
		parts = append(parts, "unit "+s.Unit)
	}
	if s.Via != "" {
		parts = append(parts, "via "+s.Via)
	}
	if s.Addr != "" {
		parts = append(parts, "from "+s.Addr)
	}
	if len(parts) == 0 {
		return "unknown"
	}
	return strings.Join(parts, ", ")
}

// submitterShort names the submitter in one word or two, for list
// tables: "alice", "uid 1001", "root/cron.service", "tcp", "notice".
func submitterShort(s queue.Submitter) string {
	var who string
	switch {
	case s.Via == queue.ViaNotice:
		return "notice"
	case s.User != "":
		who = s.User
	case s.UID >= 0:
		who = fmt.Sprintf("uid %d", s.UID)
	default:
		who = s.Via
	}
	if s.Unit != "" {
		who += "/" + s.Unit
	}
	return who
}

// printRecipients lists each recipient with its state; with several
// relays (recipients of one message may be sent in parts, one per route),
// a RELAY column names the relay of each one's latest attempt, or the one
// it waits for.
func printRecipients(w io.Writer, rs []queue.Recipient, relays bool) {
	var rows [][]string
	for _, r := range rs {
		next := ""
		if r.Status.Pending() && !r.NextAttempt.IsZero() {
			next = r.NextAttempt.Local().Format(time.DateTime)
		}
		row := []string{"  " + r.Address, string(r.Status), fmt.Sprint(r.Attempts), next, oneLine(r.LastReply.String())}
		if relays {
			row = append(row[:2], append([]string{r.Relay}, row[2:]...)...)
		}
		rows = append(rows, row)
	}
	if relays {
		printTableRows(w, "  RECIPIENT\tSTATUS\tRELAY\tATTEMPTS\tNEXT ATTEMPT\tLAST REPLY", rows)
		return
	}
	printTableRows(w, "  RECIPIENT\tSTATUS\tATTEMPTS\tNEXT ATTEMPT\tLAST REPLY", rows)
}

// severalRelays reports whether the recipients went to (or wait for)
// more than one relay.
func severalRelays(rs []queue.Recipient) bool {
	for _, r := range rs {
		if r.Relay != "" && r.Relay != rs[0].Relay {
			return true
		}
	}
	return false
}

func printHistory(w io.Writer, created time.Time, history []queue.Attempt) {
	if len(history) == 0 {
		fmt.Fprintln(w, "History:      no attempt yet")
		return
	}
	fmt.Fprintf(w, "History:      %d attempt(s), oldest first; DELAY is the time since the message was queued\n", len(history))
	var rows [][]string
	for _, a := range history {
		for i, r := range a.Results {
			row := []string{"", "", "", "", strings.Join(r.Recipients, ", "), string(r.Status), oneLine(r.Reply.String())}
			if i == 0 {
				row[0] = "  " + a.Time.Local().Format(time.DateTime)
				row[1], row[2] = a.Relay, a.Time.Sub(created).Round(time.Second).String()
				row[3] = a.Duration.Round(time.Millisecond).String()
			} else {
				row[0] = "  "
			}
			rows = append(rows, row)
		}
	}
	printTableRows(w, "  TIME\tRELAY\tDELAY\tTOOK\tRECIPIENTS\tSTATUS\tREPLY", rows)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
