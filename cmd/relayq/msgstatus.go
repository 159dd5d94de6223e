package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"relayq/control"
	"relayq/queue"
)

// runQueueStatus is `relayq queue status ID [--json]`: where one message
// is, also after it left the queue (for [queue] history_retention):
// queued, deferred, uncertain, held or active with its last replies;
// delivered (when, by which relay, the relay's reply and its own queue ID);
// dead (why); deleted. Exit codes as for the other queue commands: 0 known,
// 64 a malformed ID, 66 unknown, 69 daemon not running.
func runQueueStatus(args []string, env cmdEnv) int {
	const name = "queue status"
	fs := newFlags(name, "relayq queue status [-c FILE] [--json] ID\n"+
		"Where a message is: queued, deferred, uncertain, held, active, delivered, dead or deleted.\n"+
		"Exits 0 when the ID is known, 66 when it is not (or its history has expired).", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	asJSON := fs.Bool("json", false, "print a JSON object instead of text")
	ids, code, done := parseArgs(fs, args, env)
	if done {
		return code
	}
	if len(ids) != 1 || !queue.ValidID(ids[0]) {
		fmt.Fprintf(env.Stderr, "relayq %s: give one queue ID\n", name)
		fs.Usage()
		return exitUsage
	}
	resp, code := ask(name, *cfgPath, control.Request{Op: control.OpQueueStatus, IDs: ids}, env)
	if code != exitOK {
		return code
	}
	if resp.Lookup == nil {
		fmt.Fprintf(env.Stderr, "relayq %s: the daemon sent no answer\n", name)
		return exitTempFail
	}
	st := messageStatus(ids[0], resp.Lookup)
	if *asJSON {
		return printJSON(env, st)
	}
	printMessageStatus(env.Stdout, st)
	return exitOK
}

// statusOfMessage is `queue status --json`: a stable shape scripts may
// parse. Times absent are unknown or do not apply.
type statusOfMessage struct {
	ID          string       `json:"id"`
	State       string       `json:"state"` // queued, deferred, uncertain, held, active, delivered, dead, deleted, damaged
	From        string       `json:"from"`
	Created     time.Time    `json:"created"`
	Size        int64        `json:"size"`
	Attempts    int          `json:"attempts"`
	NextAttempt *time.Time   `json:"next_attempt,omitempty"` // still queued, not held
	Left        *time.Time   `json:"left,omitempty"`         // when it left the queue
	Died        *time.Time   `json:"died,omitempty"`         // when its last dead recipient died
	Recipients  []rcptStatus `json:"recipients"`
}

type rcptStatus struct {
	Address  string     `json:"address"`
	Status   string     `json:"status"`
	Attempts int        `json:"attempts"`
	Time     *time.Time `json:"time,omitempty"` // of the last attempt
	Relay    string     `json:"relay,omitempty"`
	// Reply is the relay's last reply, {code, enhanced, lines} as in every
	// --json output.
	Reply   *queue.Reply `json:"reply,omitempty"`
	RelayID string       `json:"relay_id,omitempty"` // the relay's queue ID, from "queued as …"
}

// messageStatus condenses a lookup: the live message when there is one,
// else the archive record (which has every recipient), else the dead
// letter.
func messageStatus(id string, l *queue.Lookup) statusOfMessage {
	st := statusOfMessage{ID: id}
	switch {
	case l.Message != nil:
		m := l.Message
		st.State, st.From, st.Created, st.Size, st.Attempts = string(m.State()), m.From, m.Created, m.Size, m.Attempts
		if !m.Held && m.LeasedUntil.IsZero() {
			st.NextAttempt = timePtr(m.NextAttempt)
		}
		for _, r := range m.Recipients {
			st.Recipients = append(st.Recipients, rcptOf(r.Address, r.Status, r.Attempts, r.LastAttempt, relayOf(m.History, r.Address), r.LastReply))
		}
	case l.Archived != nil:
		a := l.Archived
		st.State, st.From, st.Created, st.Size, st.Attempts = string(a.Fate), a.From, a.Created, a.Size, a.Attempts
		st.Left = timePtr(a.Left)
		for _, r := range a.Recipients {
			rs := rcptOf(r.Address, r.Status, r.Attempts, r.Time, r.Relay, r.Reply)
			rs.RelayID = r.RelayID
			st.Recipients = append(st.Recipients, rs)
		}
	default:
		d := l.Dead
		st.State, st.From, st.Created, st.Size, st.Attempts = string(queue.FateDead), d.From, d.Created, d.Size, d.Attempts
		if d.Damaged != "" {
			st.State = string(queue.StateDamaged)
		}
		for _, r := range d.Recipients {
			st.Recipients = append(st.Recipients, rcptOf(r.Address, r.Status, r.Attempts, r.LastAttempt, "", r.LastReply))
		}
	}
	if l.Dead != nil {
		st.Died = timePtr(l.Dead.Died)
	}
	if st.Recipients == nil {
		st.Recipients = []rcptStatus{}
	}
	return st
}

func rcptOf(addr string, status queue.Status, attempts int, last time.Time, relay string, reply *queue.Reply) rcptStatus {
	rs := rcptStatus{Address: addr, Status: string(status), Attempts: attempts, Time: timePtr(last), Relay: relay, Reply: reply}
	if status == queue.StatusDelivered {
		rs.RelayID = queue.RelayQueueID(reply)
	}
	return rs
}

// relayOf is the relay of the latest attempt in h that tried addr.
func relayOf(h []queue.Attempt, addr string) string {
	for i := len(h) - 1; i >= 0; i-- {
		for _, r := range h[i].Results {
			if slices.Contains(r.Recipients, addr) {
				return h[i].Relay
			}
		}
	}
	return ""
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func printMessageStatus(w io.Writer, st statusOfMessage) {
	field := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-14s%s\n", name+":", fmt.Sprintf(format, args...))
	}
	field("Queue ID", "%s", st.ID)
	field("State", "%s", stateText(st))
	from := st.From
	if from == "" {
		from = "<>"
	}
	field("From", "%s", from)
	field("Created", "%s (%s ago)", st.Created.Local().Format(time.DateTime), age(st.Created))
	field("Size", "%d bytes", st.Size)
	field("Attempts", "%d", st.Attempts)
	var rows [][]string
	for _, r := range st.Recipients {
		when := ""
		if r.Time != nil {
			when = r.Time.Local().Format(time.DateTime)
		}
		rows = append(rows, []string{"  " + r.Address, r.Status, when, r.Relay, r.RelayID, oneLine(r.Reply.String())})
	}
	printTableRows(w, "  RECIPIENT\tSTATUS\tLAST ATTEMPT\tRELAY\tRELAY'S ID\tREPLY", rows)
}

// stateText is the state with the time that goes with it.
func stateText(st statusOfMessage) string {
	switch {
	case st.Left != nil:
		return fmt.Sprintf("%s (left the queue %s)", st.State, st.Left.Local().Format(time.DateTime))
	case st.State == string(queue.FateDead) && st.Died != nil:
		return fmt.Sprintf("dead (dead-lettered %s; see relayq dead show %s)", st.Died.Local().Format(time.DateTime), st.ID)
	case st.State == string(queue.StateDamaged):
		return fmt.Sprintf("damaged: its record in the queue file does not decode (see relayq queue show %s or dead show %[1]s)", st.ID)
	case st.State == string(queue.StateUncertain) && st.NextAttempt != nil:
		return fmt.Sprintf("uncertain: maybe delivered (the connection was lost after the final dot); next attempt %s", when(*st.NextAttempt))
	case st.NextAttempt != nil:
		return fmt.Sprintf("%s (next attempt %s)", st.State, when(*st.NextAttempt))
	}
	return st.State
}
