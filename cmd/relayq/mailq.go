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
	fs := newFlags("mailq", "mailq [-c FILE] [--limit N] [--after ID] [--rcpt PATTERN] [--older-than DURATION] [--json]\n"+
		"Lists the queue as Postfix's mailq (postqueue -p) does, for any user.", env)
	cfgPath := fs.String("c", "", "configuration `file`")
	asJSON := fs.Bool("json", false, "print a JSON array of what the listing shows")
	pf := addPageFlags(fs, "messages")
	rest, code, done := parseArgs(fs, args, env)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(env.Stderr, "mailq: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	req, bad := pf.request(control.Request{Op: control.OpMailq})
	if bad != "" {
		fmt.Fprintf(env.Stderr, "mailq: %s\n", bad)
		return exitUsage
	}
	return mailq(*cfgPath, *asJSON, req, pf.limitFor(*asJSON), env)
}

// mailq prints the listing req asks for (as JSON with asJSON), at most
// limit messages (0: all), for the daemon that the configuration at
// cfgPath ("" for the default search) names.
func mailq(cfgPath string, asJSON bool, req control.Request, limit int, env cmdEnv) int {
	cfg, code := loadPublicConfig("mailq", cfgPath, env)
	if code != exitOK {
		return code
	}
	out := &mailqWriter{w: env.Stdout, loc: time.Local}
	arr := &jsonArray{w: env.Stdout}
	each := func(resp *control.Response) error {
		for _, m := range resp.Messages {
			m = control.MailqView(m) // the same for every user, and from the file
			if asJSON {
				if err := arr.add(mailqItemOf(m)); err != nil {
					return err
				}
				continue
			}
			out.add(m)
		}
		return nil
	}
	// The mailq socket answers every user (control.MailqView).
	notRunning := false
	call := func(req control.Request) (*control.Response, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := control.Call(ctx, cfg.Control.MailqSocket, req)
		switch {
		case err == nil:
			return resp, exitOK
		case errors.Is(err, control.ErrNotRunning) && req.After == "" && !notRunning:
			notRunning = true
			return nil, exitUnavailable
		}
		return nil, askFailed("mailq", resp, err, env) // ops.go
	}
	l, code := pages(req, limit, call, each)
	if notRunning {
		// Read from the file as the daemon would answer, a page at a time.
		r, rc := mailqOffline(cfg, env)
		if rc != exitOK {
			return rc
		}
		l, code = listed{}, exitOK
		if r != nil {
			defer r.Close()
			l, code = pages(req, limit, func(req control.Request) (*control.Response, int) {
				resp := control.MailqFile(r, req)
				if resp.Error != "" {
					fmt.Fprintf(env.Stderr, "mailq: %s\n", resp.Error)
					return nil, exitIOErr
				}
				return &resp, exitOK
			}, each)
		}
	}
	if asJSON && (code == exitOK || arr.n > 0) {
		if err := arr.end(); err != nil && code == exitOK {
			code = exitIOErr
		}
	}
	if code != exitOK {
		return code
	}
	if asJSON {
		if l.next != "" {
			fmt.Fprintf(env.Stderr, "mailq: the first %d shown; %s\n", l.shown, moreText("mailq", l.next))
		}
		return exitOK
	}
	if l.next != "" {
		out.cut(l.first.Total, l.first.TotalBytes, l.next)
	}
	if err := out.end(); err != nil {
		return exitIOErr
	}
	return exitOK
}

// mailqOffline opens the queue file of a daemon that is not running, and
// says on stderr that it did and what waits in the maildrop. The reader is
// nil when there is nothing queued (no file yet, an empty one).
func mailqOffline(cfg *config.Config, env cmdEnv) (*queue.FileReader, int) {
	path := cfg.Queue.Path
	fmt.Fprintf(env.Stderr, "mailq: relayq is not running; reading %s directly\n", path)
	r, err := queue.OpenFileReader(path, maintenanceLockTimeout)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r = nil // no queue yet: nothing queued
	case errors.Is(err, queue.ErrEmpty):
		fmt.Fprintf(env.Stderr, "mailq: %v: it holds no messages; relayq serve sets it aside when it starts (relayq queue check says more)\n", err)
		r = nil
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
	return r, exitOK
}

// mailqWriter writes the listing a message at a time, as the pages come.
type mailqWriter struct {
	w     io.Writer
	loc   *time.Location
	n     int
	total int64
	// Set by cut: the whole queue's figures for the footer, and the
	// After of the next page.
	queued      int
	queuedBytes int64
	next        string
}

func (o *mailqWriter) add(m *queue.Message) {
	if o.n == 0 {
		fmt.Fprintf(o.w, mailqString, "----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------")
	} else {
		fmt.Fprintln(o.w)
	}
	writeMailqMessage(o.w, m, o.loc)
	o.n++
	o.total += m.Size
}

// cut notes that the listing stopped before the end: the footer gives the
// whole queue's figures, as Postfix's does, and says how to go on.
func (o *mailqWriter) cut(queued int, queuedBytes int64, next string) {
	o.queued, o.queuedBytes, o.next = queued, queuedBytes, next
}

// end writes the footer: "-- 12 Kbytes in 3 Requests.", for the whole
// queue; when the listing was cut short, a line more says how many were
// shown and how to see the next ones.
func (o *mailqWriter) end() error {
	if o.n == 0 && o.next == "" {
		_, err := fmt.Fprintln(o.w, "Mail queue is empty")
		return err
	}
	n, total := o.n, o.total
	if o.next != "" {
		n, total = max(o.queued, o.n), max(o.queuedBytes, o.total)
	}
	requests := "Requests"
	if n == 1 {
		requests = "Request"
	}
	_, err := fmt.Fprintf(o.w, "\n-- %d Kbytes in %d %s.\n", total/1024, n, requests)
	if err == nil && o.next != "" {
		_, err = fmt.Fprintf(o.w, "-- %d shown; %s\n", o.n, moreText("mailq", o.next))
	}
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

func mailqItemOf(m *queue.Message) mailqItem {
	it := mailqItem{ID: m.ID, State: string(m.State()), Size: m.Size, Created: m.Created, From: m.From, Recipients: []mailqRcpt{}}
	for _, r := range m.Recipients {
		it.Recipients = append(it.Recipients, mailqRcpt{Address: r.Address, Status: string(r.Status), LastReply: r.LastReply})
	}
	return it
}
