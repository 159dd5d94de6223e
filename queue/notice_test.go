package queue

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"
)

func notice(to string) (Envelope, []byte) {
	return Envelope{From: "", Recipients: []string{to}, Submitter: Submitter{UID: -1}}, []byte("Subject: notice\r\n\r\nbody\r\n")
}

// TestPutNoticeOnce: a failure notice is queued and recorded in one
// commit; a second one about the same message queues nothing; the record
// survives a reopen.
func TestPutNoticeOnce(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	id := put(t, q, "Subject: x\r\n\r\nhi\r\n", "gone@example.net")
	fail(t, q, reply550, "gone@example.net")

	env, body := notice("cron@example.org")
	nid, err := q.PutNotice(context.Background(), id, NoticeFailed, env, body)
	if err != nil {
		t.Fatal(err)
	}
	n, err := q.Get(nid)
	if err != nil {
		t.Fatal(err)
	}
	if n.From != "" || n.Submitter.Via != ViaNotice || n.Recipients[0].Address != "cron@example.org" {
		t.Errorf("notice record %+v", n)
	}
	if got, _ := io.ReadAll(q.Body(nid)); string(got) != string(body) {
		t.Errorf("notice body %q", got)
	}
	if _, err := q.PutNotice(context.Background(), id, NoticeFailed, env, body); !errors.Is(err, ErrNoticeSent) {
		t.Errorf("second notice: %v, want ErrNoticeSent", err)
	}
	msgs, _ := q.List()
	if len(msgs) != 1 {
		t.Errorf("%d messages queued, want the one notice", len(msgs))
	}

	q.Close()
	q, err = Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, p := range q.Check() {
		t.Errorf("integrity: %v", p)
	}
	rec, err := q.Notices(id)
	if err != nil || rec.Failed != nid || !rec.FailedAt.Equal(c.Now()) || rec.Delayed != "" {
		t.Errorf("notice record after reopen: %+v, %v", rec, err)
	}
	if _, err := q.PutNotice(context.Background(), id, NoticeFailed, env, body); !errors.Is(err, ErrNoticeSent) {
		t.Errorf("notice after reopen: %v, want ErrNoticeSent", err)
	}
}

// TestDelayNoticeOnlyWhilePending: a delay notice needs the message in the
// queue with a recipient pending, and goes once.
func TestDelayNoticeOnlyWhilePending(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := put(t, q, "Subject: x\r\n\r\nhi\r\n", "slow@example.net")
	env, body := notice("cron@example.org")
	if _, err := q.PutNotice(context.Background(), id, NoticeDelayed, env, body); err != nil {
		t.Fatal(err)
	}
	if _, err := q.PutNotice(context.Background(), id, NoticeDelayed, env, body); !errors.Is(err, ErrNoticeSent) {
		t.Errorf("second delay notice: %v, want ErrNoticeSent", err)
	}
	other := put(t, q, "Subject: y\r\n\r\nhi\r\n", "fast@example.net")
	if _, err := q.Delete([]string{other}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.PutNotice(context.Background(), other, NoticeDelayed, env, body); !errors.Is(err, ErrNotFound) {
		t.Errorf("delay notice about a message gone: %v, want ErrNotFound", err)
	}
}

// TestFailureNoticesOwed: dead letters that died since notices were on,
// not from the null sender, whose message has left the queue and which
// have no notice yet.
func TestFailureNoticesOwed(t *testing.T) {
	c := newClock()
	q, _ := openTest(t, Options{Now: c.Now})
	before := put(t, q, "Subject: a\r\n\r\nhi\r\n", "a@example.net")
	fail(t, q, reply550, "a@example.net") // died before notices were on
	c.Advance(time.Minute)

	since, err := q.EnableNotices(true)
	if err != nil || !since.Equal(c.Now()) {
		t.Fatalf("EnableNotices = %v, %v", since, err)
	}
	c.Advance(time.Minute)
	if again, _ := q.EnableNotices(true); !again.Equal(since) {
		t.Errorf("second EnableNotices(true) = %v, want the first time %v", again, since)
	}
	owedID := put(t, q, "Subject: b\r\n\r\nhi\r\n", "b@example.net")
	fail(t, q, reply550, "b@example.net")
	nullID, err := q.Put(context.Background(), Envelope{From: "", Recipients: []string{"c@example.net"}}, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	fail(t, q, reply550, "c@example.net")
	partial := put(t, q, "Subject: d\r\n\r\nhi\r\n", "d1@example.net", "d2@example.net")
	fail(t, q, reply550, "d1@example.net") // d2 still pending

	owed, err := q.FailureNoticesOwed(since)
	if err != nil {
		t.Fatal(err)
	}
	if len(owed) != 1 || owed[0].ID != owedID {
		var ids []string
		for _, d := range owed {
			ids = append(ids, d.ID)
		}
		t.Fatalf("owed %v, want only %s (not %s: before; %s: null sender; %s: still queued)", ids, owedID, before, nullID, partial)
	}
	env, body := notice("cron@example.org")
	if _, err := q.PutNotice(context.Background(), owedID, NoticeFailed, env, body); err != nil {
		t.Fatal(err)
	}
	if owed, _ := q.FailureNoticesOwed(since); len(owed) != 0 {
		t.Errorf("owed after the notice: %d", len(owed))
	}

	// Once the dead letter is purged, its record goes at the next look.
	if _, err := q.DeleteDead([]string{owedID}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.FailureNoticesOwed(since); err != nil {
		t.Fatal(err)
	}
	if rec, _ := q.Notices(owedID); rec.Failed != "" {
		t.Errorf("record of a purged dead letter kept: %+v", rec)
	}

	if off, err := q.EnableNotices(false); err != nil || !off.IsZero() {
		t.Errorf("EnableNotices(false) = %v, %v", off, err)
	}
	c.Advance(time.Minute)
	if on, _ := q.EnableNotices(true); !on.Equal(c.Now()) {
		t.Errorf("notices on again since %v, want now %v", on, c.Now())
	}
}
