package delivery

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-smtp"

	"relayq/queue"
	"relayq/transport"
)

// dsn is a delivery status notification as a reader sees it, parsed with
// go-message.
type dsn struct {
	header     message.Header
	reportType string
	human      string
	perMessage textproto.MIMEHeader
	recipients []textproto.MIMEHeader
	headers    string // the text/rfc822-headers part
}

func parseDSN(t *testing.T, body []byte) dsn {
	t.Helper()
	e, err := message.Read(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("go-message cannot read the notice: %v\n%s", err, body)
	}
	var d dsn
	d.header = e.Header
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" {
		t.Fatalf("Content-Type %q (%v), want multipart/report", mt, err)
	}
	d.reportType = params["report-type"]
	mr := e.MultipartReader()
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		ct, _, _ := p.Header.ContentType()
		types = append(types, ct)
		data, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch ct {
		case "text/plain":
			d.human = string(data)
		case "message/delivery-status":
			blocks := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n")
			for i, b := range blocks {
				if strings.TrimSpace(b) == "" {
					continue
				}
				h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(b + "\n\n"))).ReadMIMEHeader()
				if err != nil {
					t.Fatalf("delivery-status block %d: %v\n%s", i, err, b)
				}
				if i == 0 {
					d.perMessage = h
				} else {
					d.recipients = append(d.recipients, h)
				}
			}
		case "text/rfc822-headers":
			d.headers = string(data)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Errorf("parts %v, want text/plain, message/delivery-status, text/rfc822-headers", types)
	}
	return d
}

type noticeRig struct {
	q *queue.Queue
	n *Notifier
}

func newNoticeRig(t *testing.T, opts NoticeOptions) *noticeRig {
	t.Helper()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range q.Check() {
			t.Errorf("integrity: %v", p)
		}
		q.Close()
	})
	opts.Queue = q
	if opts.To == "" {
		opts.To = NoticeToSender
	}
	opts.Hostname = "relayq.test"
	opts.Relay = "smtp://mail.example.net:587"
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return &noticeRig{q: q, n: NewNotifier(opts)}
}

const original = "From: cron@example.org\r\nTo: gone@example.net\r\nSubject: nightly backup\r\nMessage-ID: <backup.1@example.org>\r\n\r\nbody that must not be returned\r\n"

// attempt puts a message and records one attempt with outcome for each
// recipient, then hands the record to the Notifier as the deliverer does.
func (r *noticeRig) attempt(t *testing.T, env queue.Envelope, outcomes ...queue.Outcome) string {
	t.Helper()
	id, err := r.q.Put(context.Background(), env, []byte(original))
	if err != nil {
		t.Fatal(err)
	}
	// Notices queued before are due too: lease them all, keep this one.
	ls, err := r.q.Lease(1000)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	var mine *queue.Lease
	for _, l := range ls {
		if l.Message.ID == id {
			mine = l
		} else if err := r.q.Release(l); err != nil {
			t.Fatal(err)
		}
	}
	if mine == nil {
		t.Fatalf("message %s not leased", id)
	}
	rec, err := r.q.RecordAttempt(mine, queue.Attempt{Relay: "smtp://mail.example.net:587"}, outcomes)
	if err != nil {
		t.Fatal(err)
	}
	r.n.After(rec)
	return id
}

// notices returns the notices queued, by the ID of the message they are about.
func (r *noticeRig) notices(t *testing.T) []*queue.Message {
	t.Helper()
	msgs, err := r.q.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []*queue.Message
	for _, m := range msgs {
		if m.Submitter.Via == queue.ViaNotice {
			out = append(out, m)
		}
	}
	return out
}

func (r *noticeRig) body(t *testing.T, id string) []byte {
	t.Helper()
	b, err := io.ReadAll(r.q.Body(id))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var reply550 = &queue.Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"<gone@example.net>: Recipient address rejected: User unknown"}, Stage: "rcpt"}

// TestFailureNotice: a recipient dies on 550 5.1.1; the sender gets one
// RFC 3464 report that go-message reads as multipart/report with Status
// 5.1.1, the relay's reply as Diagnostic-Code and the original headers
// (not the body); the recipient delivered in the same attempt is not
// named. A second look (the sweep) sends nothing more.
func TestFailureNotice(t *testing.T) {
	r := newNoticeRig(t, NoticeOptions{})
	env := queue.Envelope{From: "cron@example.org", Recipients: []string{"gone@example.net", "ok@example.net"}, DSN: queue.DSN{EnvelopeID: "env-42"}}
	id := r.attempt(t, env,
		queue.Outcome{Address: "gone@example.net", Result: queue.Failed, Reply: reply550},
		queue.Outcome{Address: "ok@example.net", Result: queue.Delivered, Reply: &queue.Reply{Code: 250}})

	ns := r.notices(t)
	if len(ns) != 1 {
		t.Fatalf("%d notices queued, want 1", len(ns))
	}
	n := ns[0]
	if n.From != "" || len(n.Recipients) != 1 || n.Recipients[0].Address != "cron@example.org" {
		t.Errorf("notice envelope from %q to %v, want <> to cron@example.org", n.From, n.Recipients)
	}
	d := parseDSN(t, r.body(t, n.ID))
	if d.reportType != "delivery-status" {
		t.Errorf("report-type %q", d.reportType)
	}
	if got := d.header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("Auto-Submitted %q", got)
	}
	if got := d.perMessage.Get("Reporting-Mta"); got != "dns; relayq.test" {
		t.Errorf("Reporting-MTA %q", got)
	}
	if got := d.perMessage.Get("Original-Envelope-Id"); got != "env-42" {
		t.Errorf("Original-Envelope-Id %q", got)
	}
	if d.perMessage.Get("Arrival-Date") == "" {
		t.Error("no Arrival-Date")
	}
	if len(d.recipients) != 1 {
		t.Fatalf("%d recipient blocks, want 1 (the delivered one is not reported)", len(d.recipients))
	}
	rc := d.recipients[0]
	want := map[string]string{
		"Final-Recipient": "rfc822; gone@example.net",
		"Action":          "failed",
		"Status":          "5.1.1",
		"Remote-Mta":      "dns; mail.example.net",
		"Diagnostic-Code": "smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown",
	}
	for k, v := range want {
		if got := rc.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if !strings.Contains(d.headers, "Subject: nightly backup") || strings.Contains(d.headers, "must not be returned") {
		t.Errorf("returned headers %q", d.headers)
	}
	if !strings.Contains(d.human, id) || !strings.Contains(d.human, "gone@example.net") {
		t.Errorf("human part names neither the queue ID nor the recipient:\n%s", d.human)
	}

	since, err := r.q.EnableNotices(true)
	if err != nil {
		t.Fatal(err)
	}
	r.n.sweep(context.Background(), since.Add(-time.Hour))
	if ns := r.notices(t); len(ns) != 1 {
		t.Errorf("%d notices after a sweep, want still 1", len(ns))
	}
}

// TestSweepSendsMissedNotice: a crash between the commit that
// dead-lettered a recipient and the notice's commit leaves a dead letter
// without its notice; the sweep at the next start sends it, once.
func TestSweepSendsMissedNotice(t *testing.T) {
	r := newNoticeRig(t, NoticeOptions{SweepInterval: time.Hour})
	since, err := r.q.EnableNotices(true)
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.q.Put(context.Background(), queue.Envelope{From: "cron@example.org", Recipients: []string{"gone@example.net"}}, []byte(original))
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := r.q.Lease(1)
	if _, err := r.q.RecordAttempt(ls[0], queue.Attempt{}, []queue.Outcome{{Address: "gone@example.net", Result: queue.Failed, Reply: reply550}}); err != nil {
		t.Fatal(err)
	}
	// No After: the process died here.
	r.n.sweep(context.Background(), since)
	r.n.sweep(context.Background(), since)
	ns := r.notices(t)
	if len(ns) != 1 {
		t.Fatalf("%d notices after two sweeps, want 1", len(ns))
	}
	if rec, _ := r.q.Notices(id); rec.Failed != ns[0].ID {
		t.Errorf("notice record %+v, want the notice %s", rec, ns[0].ID)
	}
}

// TestNoNotice: no notice for a null sender (no bounce loops), for a
// recipient that asked NOTIFY=NEVER, or while the message still has a
// recipient pending.
func TestNoNotice(t *testing.T) {
	r := newNoticeRig(t, NoticeOptions{})
	r.attempt(t, queue.Envelope{From: "", Recipients: []string{"gone@example.net"}},
		queue.Outcome{Address: "gone@example.net", Result: queue.Failed, Reply: reply550})
	r.attempt(t, queue.Envelope{From: "cron@example.org", Recipients: []string{"gone@example.net"}, RecipientDSN: []queue.RecipientDSN{{Notify: []string{"NEVER"}}}},
		queue.Outcome{Address: "gone@example.net", Result: queue.Failed, Reply: reply550})
	r.attempt(t, queue.Envelope{From: "cron@example.org", Recipients: []string{"gone@example.net", "slow@example.net"}},
		queue.Outcome{Address: "gone@example.net", Result: queue.Failed, Reply: reply550},
		queue.Outcome{Address: "slow@example.net", Result: queue.Deferred, Reply: &queue.Reply{Code: 451, Enhanced: "4.3.0"}, NextAttempt: time.Now().Add(time.Hour)})
	if ns := r.notices(t); len(ns) != 0 {
		t.Errorf("%d notices queued, want none", len(ns))
	}
}

// TestPostmasterNotice: with To = postmaster, the notice goes to the
// postmaster, whatever NOTIFY said.
func TestPostmasterNotice(t *testing.T) {
	r := newNoticeRig(t, NoticeOptions{To: NoticeToPostmaster, Postmaster: "postmaster@example.org"})
	r.attempt(t, queue.Envelope{From: "cron@example.org", Recipients: []string{"gone@example.net"}, RecipientDSN: []queue.RecipientDSN{{Notify: []string{"NEVER"}}}},
		queue.Outcome{Address: "gone@example.net", Result: queue.Failed, Reply: reply550})
	ns := r.notices(t)
	if len(ns) != 1 || ns[0].Recipients[0].Address != "postmaster@example.org" {
		t.Fatalf("notices %+v, want one to postmaster@example.org", ns)
	}
	d := parseDSN(t, r.body(t, ns[0].ID))
	if !strings.Contains(d.human, "A message from <cron@example.org>") {
		t.Errorf("human part does not name the sender:\n%s", d.human)
	}
}

// TestDelayNotice: a message that has waited DelayAfter gets one "still
// trying" notice (Action: delayed, a 4.x.x Status, Will-Retry-Until) at
// the first attempt after that, and not another at the next one.
func TestDelayNotice(t *testing.T) {
	r := newNoticeRig(t, NoticeOptions{DelayAfter: time.Nanosecond, MaxLifetime: 5 * 24 * time.Hour})
	deferred := queue.Outcome{Address: "slow@example.net", Result: queue.Deferred, Reply: &queue.Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"try later"}}, NextAttempt: time.Now()}
	id := r.attempt(t, queue.Envelope{From: "cron@example.org", Recipients: []string{"slow@example.net"}}, deferred)
	ls, err := r.q.Lease(10)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ID == id {
			rec, err := r.q.RecordAttempt(l, queue.Attempt{}, []queue.Outcome{deferred})
			if err != nil {
				t.Fatal(err)
			}
			r.n.After(rec)
		} else {
			r.q.Release(l)
		}
	}
	ns := r.notices(t)
	if len(ns) != 1 {
		t.Fatalf("%d notices, want 1", len(ns))
	}
	d := parseDSN(t, r.body(t, ns[0].ID))
	rc := d.recipients[0]
	if rc.Get("Action") != "delayed" || rc.Get("Status") != "4.3.0" || rc.Get("Will-Retry-Until") == "" {
		t.Errorf("recipient block %v", rc)
	}
	if !strings.Contains(d.header.Get("Subject"), "Delayed") {
		t.Errorf("Subject %q", d.header.Get("Subject"))
	}
}

// onlyNotice parses the one notice queued and returns it with its
// recipient blocks by Final-Recipient address.
func (r *noticeRig) onlyNotice(t *testing.T) (dsn, map[string]textproto.MIMEHeader) {
	t.Helper()
	ns := r.notices(t)
	if len(ns) != 1 {
		t.Fatalf("%d notices queued, want 1", len(ns))
	}
	d := parseDSN(t, r.body(t, ns[0].ID))
	blocks := make(map[string]textproto.MIMEHeader)
	for _, b := range d.recipients {
		blocks[strings.TrimPrefix(b.Get("Final-Recipient"), "rfc822; ")] = b
	}
	return d, blocks
}

// wantFields checks a recipient block: every field of want as given, and
// no field named with an empty value.
func wantFields(t *testing.T, addr string, b textproto.MIMEHeader, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := b[textproto.CanonicalMIMEHeaderKey(k)]; v == "" && ok {
			t.Errorf("%s: %s: %q, want none", addr, k, got)
		} else if v != "" && b.Get(k) != v {
			t.Errorf("%s: %s: %q, want %q", addr, k, b.Get(k), v)
		}
	}
}

// TestExpiryNotice: a recipient the relay answered 451 until its lifetime
// ran out is reported failed with Status 4.4.7 (delivery time expired),
// the relay's 451 exactly as the relay sent it under "Diagnostic-Code:
// smtp;" (none of relayq's words there) and the relay as Remote-MTA; the
// text for people says that it expired, and quotes the relay. A recipient
// that no relay ever answered (its connections were refused) expires the
// same way, but its Diagnostic-Code is relayq's own ("x-relayq;") and
// names no Remote-MTA.
func TestExpiryNotice(t *testing.T) {
	r := newNoticeRig(t, NoticeOptions{})
	greylisted := &queue.Reply{Code: 451, Enhanced: "4.7.1", Lines: []string{"<slow@example.net>: Recipient address rejected:", "greylisted, try again later"}, Stage: "rcpt"}
	refused := &queue.Reply{Lines: []string{"dial tcp 192.0.2.1:25: connect: connection refused"}}
	r.attempt(t, queue.Envelope{From: "cron@example.org", Recipients: []string{"slow@example.net", "down@example.net"}},
		queue.Outcome{Address: "slow@example.net", Result: queue.Failed, Reply: expired(greylisted, 120*time.Hour)},
		queue.Outcome{Address: "down@example.net", Result: queue.Failed, Reply: expired(refused, 120*time.Hour)})
	d, blocks := r.onlyNotice(t)
	wantFields(t, "slow", blocks["slow@example.net"], map[string]string{
		"Action":          "failed",
		"Status":          "4.4.7",
		"Remote-MTA":      "dns; mail.example.net",
		"Diagnostic-Code": "smtp; 451 4.7.1 <slow@example.net>: Recipient address rejected: greylisted, try again later",
	})
	wantFields(t, "down", blocks["down@example.net"], map[string]string{
		"Action":          "failed",
		"Status":          "4.4.7",
		"Remote-MTA":      "",
		"Diagnostic-Code": "x-relayq; message expired after 120h0m0s in the queue; last reply: dial tcp 192.0.2.1:25: connect: connection refused",
	})
	for _, want := range []string{
		"<slow@example.net>: message expired after 120h0m0s in the queue; the relay's last reply: 451 4.7.1 <slow@example.net>: Recipient address rejected: greylisted, try again later (in reply to rcpt)",
		"<down@example.net>: message expired after 120h0m0s in the queue; last reply: dial tcp",
	} {
		if !strings.Contains(d.human, want) {
			t.Errorf("text for people lacks %q:\n%s", want, d.human)
		}
	}
}

// TestLocalRefusalNotice: a message relayq would not send (larger than the
// relay's SIZE) is reported with the status relayq chose (5.3.4), but its
// words are its own ("x-relayq;"), with no Remote-MTA: the relay never
// saw the message.
func TestLocalRefusalNotice(t *testing.T) {
	r := newNoticeRig(t, NoticeOptions{})
	err := &transport.Error{Stage: transport.StageMail, Err: &transport.LocalError{
		Reply: smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "message size 3000 exceeds the relay's SIZE limit 2000")}}
	r.attempt(t, queue.Envelope{From: "cron@example.org", Recipients: []string{"big@example.net"}},
		queue.Outcome{Address: "big@example.net", Result: queue.Failed, Reply: classifyTransaction(err).reply})
	d, blocks := r.onlyNotice(t)
	wantFields(t, "big", blocks["big@example.net"], map[string]string{
		"Action":          "failed",
		"Status":          "5.3.4",
		"Remote-MTA":      "",
		"Diagnostic-Code": "x-relayq; refused by relayq: message size 3000 exceeds the relay's SIZE limit 2000",
	})
	if want := "<big@example.net>: refused by relayq: message size 3000"; !strings.Contains(d.human, want) {
		t.Errorf("text for people lacks %q:\n%s", want, d.human)
	}
}

// TestOperatorExpiryNotice: `relayq queue expire` on a message the relay
// deferred: the notice (sent by the sweep) has Status 4.4.7, the relay's
// last reply under "smtp;" as the relay sent it, and says that an operator
// expired it.
func TestOperatorExpiryNotice(t *testing.T) {
	r := newNoticeRig(t, NoticeOptions{SweepInterval: time.Hour})
	since, err := r.q.EnableNotices(true)
	if err != nil {
		t.Fatal(err)
	}
	greylisted := &queue.Reply{Code: 451, Enhanced: "4.7.1", Lines: []string{"greylisted, try again later"}, Stage: "rcpt"}
	id := r.attempt(t, queue.Envelope{From: "cron@example.org", Recipients: []string{"slow@example.net"}},
		queue.Outcome{Address: "slow@example.net", Result: queue.Deferred, Reply: greylisted, NextAttempt: time.Now().Add(time.Hour)})
	if res, err := r.q.Expire([]string{id}); err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("expire: %+v %v", res, err)
	}
	r.n.sweep(context.Background(), since)
	d, blocks := r.onlyNotice(t)
	wantFields(t, "slow", blocks["slow@example.net"], map[string]string{
		"Action":          "failed",
		"Status":          "4.4.7",
		"Remote-MTA":      "dns; mail.example.net",
		"Diagnostic-Code": "smtp; 451 4.7.1 greylisted, try again later",
	})
	if want := "<slow@example.net>: expired by operator; the relay's last reply: 451 4.7.1 greylisted, try again later (in reply to rcpt)"; !strings.Contains(d.human, want) {
		t.Errorf("text for people lacks %q:\n%s", want, d.human)
	}
}

func TestDSNStatus(t *testing.T) {
	tests := []struct {
		kind  queue.NoticeKind
		reply *queue.Reply
		want  string
	}{
		{queue.NoticeFailed, reply550, "5.1.1"},
		{queue.NoticeFailed, &queue.Reply{Code: 554}, "5.0.0"},
		{queue.NoticeFailed, &queue.Reply{Lines: []string{"message expired after 120h0m0s in the queue"}}, "4.4.7"},
		{queue.NoticeFailed, expired(&queue.Reply{Code: 451, Enhanced: "4.7.1", Lines: []string{"greylisted"}}, time.Hour), "4.4.7"},
		{queue.NoticeFailed, expired(&queue.Reply{Code: 552, Enhanced: "5.2.2", Lines: []string{"mailbox full"}}, time.Hour), "4.4.7"},
		{queue.NoticeFailed, &queue.Reply{Lines: []string{queue.ExpiredByOperator, "last reply: 451 4.7.1 greylisted"}}, "4.4.7"},
		{queue.NoticeFailed, replyOf(&transport.LocalError{Reply: smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "too big")}), "5.3.4"},
		{queue.NoticeFailed, &queue.Reply{Enhanced: "5.3.0", Lines: []string{queue.CorruptLine}}, "5.3.0"},
		{queue.NoticeFailed, &queue.Reply{Code: 550, Enhanced: "5.7.1", Lines: []string{"message expired after a policy check"}}, "5.7.1"},
		{queue.NoticeFailed, &queue.Reply{Code: 451, Enhanced: "4.3.0"}, "4.3.0"},
		{queue.NoticeFailed, nil, "4.4.7"},
		{queue.NoticeDelayed, &queue.Reply{Code: 451, Enhanced: "4.3.0"}, "4.3.0"},
		{queue.NoticeDelayed, &queue.Reply{Code: 535, Enhanced: "5.7.8"}, "4.0.0"},
		{queue.NoticeDelayed, nil, "4.0.0"},
	}
	for _, tt := range tests {
		if got := dsnStatus(tt.kind, tt.reply); got != tt.want {
			t.Errorf("dsnStatus(%s, %v) = %q, want %q", tt.kind, tt.reply, got, tt.want)
		}
	}
}

// TestDiagnostic: only a relay's own reply is "smtp;"; relayq's words
// (a local failure, its own refusal, an expiry without a relay reply) are
// "x-relayq;"; an expiry after a relay's reply shows that reply alone.
func TestDiagnostic(t *testing.T) {
	tryLater := &queue.Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"try", "later"}, Stage: "rcpt"}
	refused := &queue.Reply{Lines: []string{"dial tcp 192.0.2.1:25: connect: connection refused"}}
	tests := []struct {
		reply *queue.Reply
		want  string
	}{
		{nil, ""},
		{&queue.Reply{}, ""},
		{&queue.Reply{Code: 550, Lines: []string{"no", "such user"}}, "smtp; 550 no such user"},
		{&queue.Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"a\r\nInjected: yes"}}, "smtp; 550 5.1.1 a  Injected: yes"},
		{&queue.Reply{Code: 554}, "smtp; 554"},
		{refused, "x-relayq; dial tcp 192.0.2.1:25: connect: connection refused"},
		{replyOf(&transport.LocalError{Reply: smtpErr(553, smtp.EnhancedCode{5, 1, 3}, "invalid recipient address: bad")}),
			"x-relayq; refused by relayq: invalid recipient address: bad"},
		{expired(tryLater, 4*time.Second), "smtp; 451 4.3.0 try later"},
		{expired(&queue.Reply{Code: 421}, 4*time.Second), "smtp; 421"},
		{expired(refused, 4*time.Second), "x-relayq; message expired after 4s in the queue; last reply: dial tcp 192.0.2.1:25: connect: connection refused"},
		{expired(nil, 4*time.Second), "x-relayq; message expired after 4s in the queue"},
		{&queue.Reply{Lines: []string{queue.ExpiredByOperator}}, "x-relayq; expired by operator"},
		{&queue.Reply{Code: 550, Enhanced: "5.7.1", Lines: []string{"message expired after a policy check"}}, "smtp; 550 5.7.1 message expired after a policy check"},
		{&queue.Reply{Enhanced: "5.3.0", Lines: []string{queue.CorruptLine, "crc mismatch"}}, "x-relayq; " + queue.CorruptLine + " crc mismatch"},
	}
	for _, tt := range tests {
		if got := accountOf(tt.reply, nil, "a@example.net").diagnostic(); got != tt.want {
			t.Errorf("diagnostic of %v = %q, want %q", tt.reply, got, tt.want)
		}
	}
}
