package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"relayq/config"
	"relayq/control"
	"relayq/queue"
	"relayq/spool"
)

// The Postfix-style queue listing, for scripts and people that know
// `mailq`. It is exactly what Postfix's `postqueue -p` prints with
// enable_long_queue_ids = yes (relayq's IDs are long ones), from Postfix's
// src/postqueue/showq_compat.c:
//
//	----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
//	01JDGZ4M7Q0000ABCDEF*     1234 Wed Nov 25 09:10:13 cron@example.org
//	                                 (451 4.3.0 Try again later (in reply to dot))
//	                                               rcpt@example.net
//
//	-- 1 Kbytes in 1 Request.
//
// The ID is followed by "*" while a worker is delivering the message and
// "!" while it is held. A message whose record does not decode has its
// line with the ID, the size of its body and its arrival time (which the ID
// encodes), then "damaged" where the sender would be, and no recipients.
// Only recipients still to be delivered are listed;
// a "(reason)" line, right-aligned to column 78, comes before the first
// recipient with that last reply. A blank line separates messages; the
// empty queue is "Mail queue is empty".
const (
	mailqString = "%-17s %8s %-19s %s\n"
	mailqSender = "%-17s %8d %19.19s %s\n"
	// mailqTime is asctime(3) without the year: "Wed Nov  5 09:10:13".
	mailqTime = "Mon Jan _2 15:04:05"
	// mailqEmptySender is how Postfix shows the null sender (its
	// empty_address_recipient default).
	mailqEmptySender = "MAILER-DAEMON"
)

// runMailq is `mailq` (relayq installed under that name), `relayq mailq`
// and `relayq sendmail -bp`: the queue in Postfix's format. It asks the
// running daemon on its mailq socket, which answers every local user as
// Postfix's showq does (control.MailqView). When the daemon is not
// running it says so on stderr and, as Postfix's does, reads the queue file
// directly (read-only), adding how many messages wait in the maildrop. Exit
// codes are the queue commands' (exit.go), plus 75 when the file is locked
// but the daemon does not answer, and 77 when this user cannot read it.
func runMailq(args []string, env cmdEnv) int {
	fs := newFlags("mailq", "mailq [-c FILE] [--json]\nLists the queue as Postfix's mailq (postqueue -p) does, for any user.", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	asJSON := fs.Bool("json", false, "print a JSON array of what the listing shows")
	rest, code, done := parseArgs(fs, args, env)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(env.Stderr, "mailq: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	return mailq(*cfgPath, *asJSON, env)
}

// mailq prints the listing (as JSON with asJSON) for the daemon that the
// configuration at cfgPath ("" for the default search) names.
func mailq(cfgPath string, asJSON bool, env cmdEnv) int {
	cfg, code := loadPublicConfig("mailq", cfgPath, env)
	if code != exitOK {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var msgs []*queue.Message
	// The mailq socket answers every user (control.MailqView).
	resp, err := control.Call(ctx, cfg.Control.MailqSocket, control.Request{Op: control.OpMailq})
	switch {
	case err == nil:
		msgs = resp.Messages
	case errors.Is(err, control.ErrNotRunning):
		if msgs, code = mailqOffline(cfg, env); code != exitOK {
			return code
		}
	default:
		return askFailed("mailq", resp, err, env) // ops.go
	}
	for i, m := range msgs {
		msgs[i] = control.MailqView(m) // the same for every user, and from the file
	}
	if asJSON {
		return printJSON(env, mailqItems(msgs))
	}
	if err := writeMailq(env.Stdout, msgs, time.Local); err != nil {
		return exitIOErr
	}
	return exitOK
}

// mailqOffline reads the queue file of a daemon that is not running, and
// says on stderr that it did and what waits in the maildrop.
func mailqOffline(cfg *config.Config, env cmdEnv) ([]*queue.Message, int) {
	path := cfg.Queue.Path
	fmt.Fprintf(env.Stderr, "mailq: relayq is not running; reading %s directly\n", path)
	msgs, err := queue.ListFile(path, maintenanceLockTimeout)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		msgs = nil // no queue yet: nothing queued
	case errors.Is(err, queue.ErrEmpty):
		fmt.Fprintf(env.Stderr, "mailq: %v: it holds no messages; relayq serve sets it aside when it starts (relayq queue check says more)\n", err)
		msgs = nil
	case errors.Is(err, queue.ErrLocked):
		fmt.Fprintf(env.Stderr, "mailq: %v: relayq is starting or stopping; try again\n", err)
		return nil, exitTempFail
	case errors.Is(err, fs.ErrPermission):
		fmt.Fprintf(env.Stderr, "mailq: %v\n", err)
		return nil, exitNoPerm
	case err != nil:
		fmt.Fprintf(env.Stderr, "mailq: %v\n", err)
		return nil, exitIOErr
	}
	if n, err := spool.PendingMaildrop(cfg.Submission.Maildrop); err == nil && n > 0 {
		fmt.Fprintf(env.Stderr, "mailq: %d message(s) in the maildrop %s, queued when relayq starts\n", n, cfg.Submission.Maildrop)
	}
	return msgs, exitOK
}

// writeMailq writes msgs (oldest first, as the daemon lists them) in
// Postfix's format, with arrival times in loc.
func writeMailq(w io.Writer, msgs []*queue.Message, loc *time.Location) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "Mail queue is empty")
		return err
	}
	var total int64
	for i, m := range msgs {
		if i == 0 {
			fmt.Fprintf(w, mailqString, "----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------")
		} else {
			fmt.Fprintln(w)
		}
		writeMailqMessage(w, m, loc)
		total += m.Size
	}
	requests := "Requests"
	if len(msgs) == 1 {
		requests = "Request"
	}
	_, err := fmt.Fprintf(w, "\n-- %d Kbytes in %d %s.\n", total/1024, len(msgs), requests)
	return err
}

func writeMailqMessage(w io.Writer, m *queue.Message, loc *time.Location) {
	id := m.ID
	switch m.State() {
	case queue.StateActive:
		id += "*"
	case queue.StateHeld:
		id += "!"
	}
	from := m.From
	if from == "" {
		from = mailqEmptySender
	}
	if m.State() == queue.StateDamaged {
		fmt.Fprintf(w, mailqSender, id, m.Size, m.Created.In(loc).Format(mailqTime), "damaged")
		show := "message record does not decode; relayq queue show " + m.ID
		fmt.Fprintf(w, "%*s(%s)\n", max(76-len(show), 0), "", show)
		return
	}
	fmt.Fprintf(w, mailqSender, id, m.Size, m.Created.In(loc).Format(mailqTime), from)
	saved := ""
	for _, r := range m.Recipients {
		if !r.Status.Pending() {
			continue
		}
		why := oneLine(r.LastReply.String())
		if why != "" && r.Status == queue.StatusUncertain {
			why = "maybe delivered, connection lost after the final dot: " + why
		}
		if why != saved {
			saved = why
			show := why
			if show == "" {
				show = "reason unavailable"
			}
			fmt.Fprintf(w, "%*s(%s)\n", max(76-len(show), 0), "", show)
		}
		fmt.Fprintf(w, mailqString, "", "", "", r.Address)
	}
}

// mailqItem is one message in `mailq --json`: what the listing shows, with
// the key names of `relayq queue list --json`.
type mailqItem struct {
	ID         string      `json:"id"`
	State      string      `json:"state"` // queued, deferred, uncertain, held or active
	Size       int64       `json:"size"`
	Created    time.Time   `json:"created"` // arrival time
	From       string      `json:"from"`    // "" for the null sender
	Recipients []mailqRcpt `json:"recipients"`
}

// mailqRcpt is a recipient still to be delivered, and the relay's last
// reply to it ({code, enhanced, lines}), absent before the first attempt.
type mailqRcpt struct {
	Address   string       `json:"address"`
	Status    string       `json:"status"`
	LastReply *queue.Reply `json:"last_reply,omitempty"`
}

func mailqItems(msgs []*queue.Message) []mailqItem {
	out := make([]mailqItem, 0, len(msgs))
	for _, m := range msgs {
		it := mailqItem{ID: m.ID, State: string(m.State()), Size: m.Size, Created: m.Created, From: m.From, Recipients: []mailqRcpt{}}
		for _, r := range m.Recipients {
			it.Recipients = append(it.Recipients, mailqRcpt{Address: r.Address, Status: string(r.Status), LastReply: r.LastReply})
		}
		out = append(out, it)
	}
	return out
}
