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

	"relayq/queue"
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
	ls, err := r.q.Lease(1)
	if err != nil || len(ls) != 1 {
		t.Fatalf("lease: %v %v", ls, err)
	}
	rec, err := r.q.RecordAttempt(ls[0], queue.Attempt{Relay: "smtp://mail.example.net:587"}, outcomes)
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

func TestDSNStatus(t *testing.T) {
	tests := []struct {
		kind  queue.NoticeKind
		reply *queue.Reply
		want  string
	}{
		{queue.NoticeFailed, reply550, "5.1.1"},
		{queue.NoticeFailed, &queue.Reply{Code: 554}, "5.0.0"},
		{queue.NoticeFailed, &queue.Reply{Lines: []string{"message expired after 120h0m0s in the queue"}}, "4.4.7"},
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

func TestDiagnostic(t *testing.T) {
	tests := []struct {
		reply *queue.Reply
		want  string
	}{
		{nil, ""},
		{&queue.Reply{}, ""},
		{&queue.Reply{Code: 550, Lines: []string{"no", "such user"}}, "smtp; 550 no such user"},
		{&queue.Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"a\r\nInjected: yes"}}, "smtp; 550 5.1.1 a  Injected: yes"},
		{&queue.Reply{Lines: []string{"dial tcp: connection refused"}}, "x-relayq; dial tcp: connection refused"},
	}
	for _, tt := range tests {
		if got := diagnostic(tt.reply); got != tt.want {
			t.Errorf("diagnostic(%v) = %q, want %q", tt.reply, got, tt.want)
		}
	}
}
