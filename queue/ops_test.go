package queue

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// one runs an operator operation on a single ID and returns its per-ID
// error, failing the test on a storage error.
func one(t *testing.T, op func([]string) ([]IDResult, error), id string) error {
	t.Helper()
	res, err := op([]string{id})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].ID != id {
		t.Fatalf("results %+v, want one for %s", res, id)
	}
	return res[0].Err
}

// fail leases the message and records a permanent failure for rcpts.
func fail(t *testing.T, q *Queue, reply *Reply, rcpts ...string) {
	t.Helper()
	l := leaseOne(t, q)
	var out []Outcome
	for _, r := range rcpts {
		out = append(out, Outcome{Address: r, Result: Failed, Reply: reply})
	}
	if _, err := q.Record(l, out); err != nil {
		t.Fatal(err)
	}
}

var (
	reply550 = &Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"no such user"}}
	reply535 = &Reply{Code: 535, Enhanced: "5.7.8", Lines: []string{"authentication failed"}}
	reply451 = &Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{"try later"}}
)

func TestHoldSurvivesReopenAndIsNeverLeased(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	held := put(t, q, "held\r\n", "a@x.org")
	other := put(t, q, "other\r\n", "b@x.org")
	if err := one(t, q.Hold, held); err != nil {
		t.Fatal(err)
	}
	if err := one(t, q.Hold, held); err != nil {
		t.Fatalf("holding a held message: %v", err)
	}
	q.Close()
	q, err = Open(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if m, _ := q.Get(held); !m.Held || m.State() != StateHeld || !m.HeldSince.Equal(clk.Now()) {
		t.Fatalf("after reopen: held=%v state=%s since=%v", m.Held, m.State(), m.HeldSince)
	}
	clk.Advance(time.Hour)
	ls, err := q.Lease(10)
	if err != nil || len(ls) != 1 || ls[0].ID != other {
		t.Fatalf("leased %v (%v), want only %s", ls, err, other)
	}
	if _, err := q.Record(ls[0], []Outcome{{Address: "b@x.org", Result: Delivered}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := q.NextDue(); ok {
		t.Fatal("a held message is in the schedule")
	}
	if err := one(t, q.Retry, held); !errors.Is(err, ErrHeld) {
		t.Fatalf("retry of a held message: %v, want ErrHeld", err)
	}
	changed := q.Changed()
	if err := one(t, q.Unhold, held); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Unhold did not wake the workers")
	}
	if l := leaseOne(t, q); l.ID != held || l.Held {
		t.Fatalf("leased %s held=%v after release, want %s", l.ID, l.Held, held)
	}
	for _, p := range q.Check() {
		t.Errorf("integrity: %v", p)
	}
}

func TestUnholdKeepsTheBackoff(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	id := put(t, q, "x\r\n", "a@x.org")
	l := leaseOne(t, q)
	next := clk.Now().Add(time.Hour)
	if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Deferred, Reply: reply451, NextAttempt: next}}); err != nil {
		t.Fatal(err)
	}
	one(t, q.Hold, id)
	one(t, q.Unhold, id)
	if due, ok := q.NextDue(); !ok || !due.Equal(next) {
		t.Fatalf("due %v %v after hold and release, want %v", due, ok, next)
	}
	if err := one(t, q.Unhold, id); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("releasing a message not held: %v, want ErrNotHeld", err)
	}
	if due, ok := q.NextDue(); !ok || !due.Equal(next) {
		t.Fatalf("due %v %v after releasing a message not held, want %v as before", due, ok, next)
	}
}

func TestRetryMakesDeferredMessagesDueNow(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	ids := []string{put(t, q, "1\r\n", "a@x.org"), put(t, q, "2\r\n", "b@x.org"), put(t, q, "3\r\n", "c@x.org")}
	ls, _ := q.Lease(3)
	for _, l := range ls {
		if _, err := q.Record(l, []Outcome{{Address: l.Recipients[0].Address, Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
	}
	if ls, _ := q.Lease(3); len(ls) != 0 {
		t.Fatal("deferred messages leased before their time")
	}
	clk.Advance(time.Minute)
	if err := one(t, q.Retry, ids[0]); err != nil {
		t.Fatal(err)
	}
	if l := leaseOne(t, q); l.ID != ids[0] || l.Recipients[0].Attempts != 1 {
		t.Fatalf("leased %s with %d attempts, want %s with its 1 attempt kept", l.ID, l.Recipients[0].Attempts, ids[0])
	}
	one(t, q.Hold, ids[2])
	due, err := q.RetryAll()
	if err != nil || due != 1 {
		t.Fatalf("RetryAll made %d due (%v), want 1 (%s): the leased and the held one left alone", due, err, ids[1])
	}
	if l := leaseOne(t, q); l.ID != ids[1] {
		t.Fatalf("leased %s, want %s", l.ID, ids[1])
	}
}

func TestDeleteFreesEverything(t *testing.T) {
	q, _ := openTest(t, Options{})
	id := put(t, q, strings.Repeat("x", 3*chunkSize), "a@x.org")
	keep := put(t, q, "keep\r\n", "b@x.org")
	res, err := q.Delete([]string{id, "0000000000000ZZZZZZZ"})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || !errors.Is(res[1].Err, ErrNotFound) {
		t.Fatalf("results %+v, want done and ErrNotFound", res)
	}
	if _, err := q.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted message still there: %v", err)
	}
	if _, err := io.ReadAll(q.Body(id)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted message's body still there: %v", err)
	}
	if l := leaseOne(t, q); l.ID != keep {
		t.Fatalf("leased %s, want %s", l.ID, keep)
	}
}

// TestLeasedMessageIsRefused: no operation changes a message under a
// worker's feet.
func TestLeasedMessageIsRefused(t *testing.T) {
	q, _ := openTest(t, Options{})
	ops := map[string]func([]string) ([]IDResult, error){
		"hold": q.Hold, "delete": q.Delete, "expire": q.Expire, "retry": q.Retry,
	}
	id := put(t, q, "x\r\n", "a@x.org")
	l := leaseOne(t, q)
	for name, op := range ops {
		if err := one(t, op, id); !errors.Is(err, ErrLeased) {
			t.Errorf("%s of a leased message: %v, want ErrLeased", name, err)
		}
	}
	if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Delivered}}); err != nil {
		t.Fatalf("the worker's record after the refused operations: %v", err)
	}
}

func TestExpireDeadLettersNow(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	id := put(t, q, "x\r\n", "a@x.org", "b@x.org")
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{
		{Address: "a@x.org", Result: Delivered, Reply: &Reply{Code: 250}},
		{Address: "b@x.org", Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := one(t, q.Expire, id); err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Count(); c.Messages != 0 || c.Dead != 1 {
		t.Fatalf("counts %+v, want only a dead letter", c)
	}
	d, err := q.GetDead(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Recipients) != 1 || d.Recipients[0].Address != "b@x.org" ||
		d.Recipients[0].LastReply.String() != "expired by operator last reply: 451 4.3.0 try later" {
		t.Fatalf("dead letter recipients %+v", d.Recipients)
	}
	if body, err := io.ReadAll(q.Body(id)); err != nil || string(body) != "x\r\n" {
		t.Fatalf("body %q %v", body, err)
	}
}

// TestRequeueResetsAttemptsAndKeepsHistory: a message that died on a 550
// for one recipient comes back with that recipient only (the delivered one
// is not sent again), its attempts at zero, and the history of the attempts
// before.
func TestRequeueResetsAttemptsAndKeepsHistory(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	id, err := q.Put(t.Context(), Envelope{From: "a@x.org", Recipients: []string{"ok@x.org", "bad@x.org"}, UTF8: true, EightBit: true}, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := leaseOne(t, q)
	if _, err := q.RecordAttempt(l, Attempt{Relay: "smtp://relay:587", Duration: time.Second}, []Outcome{
		{Address: "ok@x.org", Result: Delivered, Reply: &Reply{Code: 250}},
		{Address: "bad@x.org", Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Minute)},
	}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	fail(t, q, reply550, "bad@x.org")
	if c, _ := q.Count(); c.Messages != 0 || c.Dead != 1 {
		t.Fatalf("counts %+v", c)
	}
	clk.Advance(time.Hour)
	if err := one(t, func(ids []string) ([]IDResult, error) { return q.Requeue(ids, ReplyClass{}) }, id); err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Count(); c.Messages != 1 || c.Dead != 0 {
		t.Fatalf("counts after requeue %+v", c)
	}
	l = leaseOne(t, q)
	m := l.Message
	if p := m.Pending(); len(p) != 1 || p[0].Address != "bad@x.org" || p[0].Attempts != 0 || p[0].Status != StatusQueued {
		t.Fatalf("pending after requeue %+v", p)
	}
	if m.Attempts != 0 || !m.UTF8 || !m.EightBit || !m.LifetimeStart().Equal(clk.Now()) || m.State() != StateActive {
		t.Fatalf("requeued message %+v", m)
	}
	if len(m.History) != 2 || m.History[0].Relay != "smtp://relay:587" || m.History[0].Duration != time.Second ||
		m.History[1].Results[0].Reply.String() != "550 5.1.1 no such user" {
		t.Fatalf("history %+v", m.History)
	}
	if _, err := q.Record(l, []Outcome{{Address: "bad@x.org", Result: Delivered}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Count(); c.Messages != 0 || c.Dead != 0 {
		t.Fatalf("counts after delivery %+v", c)
	}
	if _, err := io.ReadAll(q.Body(id)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("body left behind: %v", err)
	}
}

// TestRequeueByReplyClass: only the recipients that died on an
// authentication error come back; the 5.1.1 stays dead.
func TestRequeueByReplyClass(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	auth1 := put(t, q, "1\r\n", "a@x.org", "gone@x.org")
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{
		{Address: "a@x.org", Result: Failed, Reply: reply535},
		{Address: "gone@x.org", Result: Failed, Reply: reply550},
	}); err != nil {
		t.Fatal(err)
	}
	auth2 := put(t, q, "2\r\n", "b@x.org")
	fail(t, q, reply535, "b@x.org")
	gone := put(t, q, "3\r\n", "c@x.org")
	fail(t, q, reply550, "c@x.org")

	class, err := ParseReplyClass("5.7.x")
	if err != nil {
		t.Fatal(err)
	}
	res, err := q.RequeueAll(class)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		if r.Err != nil {
			t.Errorf("%s: %v", r.ID, r.Err)
		}
		got = append(got, r.ID)
	}
	if !slices.Equal(got, []string{auth1, auth2}) {
		t.Fatalf("requeued %v, want %v", got, []string{auth1, auth2})
	}
	dead, _ := q.ListDead()
	if len(dead) != 2 || dead[0].ID != auth1 || len(dead[0].Recipients) != 1 || dead[0].Recipients[0].Address != "gone@x.org" || dead[1].ID != gone {
		t.Fatalf("left dead: %+v", dead)
	}
	ls, _ := q.Lease(10)
	if len(ls) != 2 || !slices.Equal(pendingOf(ls[0].Message), []string{"a@x.org"}) || !slices.Equal(pendingOf(ls[1].Message), []string{"b@x.org"}) {
		t.Fatalf("leased %v", ls)
	}
	if err := one(t, func(ids []string) ([]IDResult, error) { return q.Requeue(ids, class) }, gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("requeue of %s by class 5.7.x: %v, want ErrNotFound", gone, err)
	}
}

func pendingOf(m *Message) []string {
	var out []string
	for _, r := range m.Pending() {
		out = append(out, r.Address)
	}
	return out
}

// TestRequeueIntoTheLiveMessage: one recipient died while another is still
// deferred; requeueing the dead one puts it back into the same record.
func TestRequeueIntoTheLiveMessage(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	id := put(t, q, "x\r\n", "dead@x.org", "later@x.org")
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{
		{Address: "dead@x.org", Result: Failed, Reply: reply550},
		{Address: "later@x.org", Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Requeue([]string{id}, ReplyClass{}); err != nil {
		t.Fatal(err)
	}
	l = leaseOne(t, q)
	if got := pendingOf(l.Message); !slices.Equal(got, []string{"dead@x.org", "later@x.org"}) {
		t.Fatalf("pending %v", got)
	}
	if c, _ := q.Count(); c.Messages != 1 || c.Dead != 0 {
		t.Fatalf("counts %+v", c)
	}
}

// TestRequeueDeadLetterWithoutRecord: dead letters written before they kept
// the message record still come back, with their flags inferred.
func TestRequeueDeadLetterWithoutRecord(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	id := "0000000000000ABCDEFG"
	old := fmt.Sprintf(`{"id":%q,"from":"a@x.org","recipients":[{"address":"b@x.org","status":"dead","attempts":3,`+
		`"last_reply":{"code":550,"enhanced":"5.1.1","lines":["no"]}}],"submitter":{"uid":1000},"created":"2026-11-20T00:00:00Z","size":5,"attempts":3,"died":"2026-11-21T00:00:00Z"}`, id)
	err := q.db.Update(func(tx *bolt.Tx) error {
		if err := putBody(tx, id, []byte("caf\xc3\xa9\r\n")); err != nil {
			return err
		}
		return tx.Bucket(bucketDead).Put([]byte(id), []byte(old))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := one(t, func(ids []string) ([]IDResult, error) { return q.Requeue(ids, ReplyClass{}) }, id); err != nil {
		t.Fatal(err)
	}
	l := leaseOne(t, q)
	if l.ID != id || !l.EightBit || l.UTF8 || l.Submitter.UID != 1000 || !slices.Equal(pendingOf(l.Message), []string{"b@x.org"}) {
		t.Fatalf("requeued %+v", l.Message)
	}
}

func TestPurgeDead(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	old := put(t, q, "old\r\n", "a@x.org")
	fail(t, q, reply550, "a@x.org")
	clk.Advance(48 * time.Hour)
	recent := put(t, q, "recent\r\n", "b@x.org")
	fail(t, q, reply550, "b@x.org")
	s, _ := q.Summarize(clk.Now().Add(-24 * time.Hour))
	if s.Dead != 2 || s.DeadSince != 1 {
		t.Fatalf("summary %+v, want 2 dead, 1 in the last day", s)
	}
	if n, err := q.PurgeDead(24 * time.Hour); err != nil || n != 1 {
		t.Fatalf("purged %d (%v), want 1", n, err)
	}
	if _, err := q.GetDead(old); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old dead letter: %v", err)
	}
	if _, err := io.ReadAll(q.Body(old)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old body: %v", err)
	}
	if _, err := q.GetDead(recent); err != nil {
		t.Fatalf("recent dead letter: %v", err)
	}
	res, err := q.DeleteDead([]string{recent, old})
	if err != nil || res[0].Err != nil || !errors.Is(res[1].Err, ErrNotFound) {
		t.Fatalf("DeleteDead: %+v %v", res, err)
	}
	if n, err := q.PurgeDead(0); err != nil || n != 0 {
		t.Fatalf("purge of nothing: %d %v", n, err)
	}
}

func TestSummarize(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	first := put(t, q, "1\r\n", "a@x.org")
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{{Address: "a@x.org", Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	held := put(t, q, "2\r\n", "b@x.org")
	one(t, q.Hold, held)
	put(t, q, "3\r\n", "c@x.org")
	leaseOne(t, q)
	put(t, q, "4\r\n", "d@x.org")
	s, err := q.Summarize(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, _ := q.Get(first)
	if s.Queued != 1 || s.Deferred != 1 || s.Held != 1 || s.Active != 1 || !s.Oldest.Equal(m.Created) ||
		!s.OldestDeferred.Equal(m.Created) || s.FileSize == 0 {
		t.Fatalf("summary %+v", s)
	}
}

func TestHistoryIsCapped(t *testing.T) {
	var h []Attempt
	long := strings.Repeat("é", maxHistoryLineLen)
	for i := range maxHistory + 10 {
		h = appendHistory(h, newAttempt(Attempt{Relay: fmt.Sprint(i)}, []Outcome{
			{Address: "a@x.org", Result: Deferred, Reply: &Reply{Code: 451, Lines: slices.Repeat([]string{long}, 20)}},
			{Address: "b@x.org", Result: Deferred, Reply: &Reply{Code: 451, Lines: slices.Repeat([]string{long}, 20)}},
		}, time.Now()))
	}
	if len(h) != maxHistory || h[0].Relay != "10" || h[len(h)-1].Relay != fmt.Sprint(maxHistory+9) {
		t.Fatalf("kept %d attempts from %s, want the last %d", len(h), h[0].Relay, maxHistory)
	}
	last := h[len(h)-1]
	if len(last.Results) != 1 || len(last.Results[0].Recipients) != 2 {
		t.Fatalf("recipients with the same reply not grouped: %+v", last.Results)
	}
	r := last.Results[0].Reply
	if len(r.Lines) != maxHistoryLines+1 || len(r.Lines[0]) > maxHistoryLineLen+len("…") || !strings.HasSuffix(r.Lines[0], "é…") {
		t.Fatalf("reply not clipped: %d lines, first %d bytes", len(r.Lines), len(r.Lines[0]))
	}

	// A message to many recipients keeps fewer attempts, but the latest whole.
	var many []Outcome
	for i := range maxHistoryAddresses + 1 {
		many = append(many, Outcome{Address: fmt.Sprintf("r%d@x.org", i), Result: Deferred})
	}
	h = appendHistory(h, newAttempt(Attempt{}, many, time.Now()))
	if len(h) != 1 || h[0].addresses() != maxHistoryAddresses+1 {
		t.Fatalf("kept %d attempts, want only the large latest one", len(h))
	}
}

func TestReplyClass(t *testing.T) {
	r := func(code int, enh string) *Reply { return &Reply{Code: code, Enhanced: enh} }
	tests := []struct {
		pattern string
		match   []*Reply
		miss    []*Reply
	}{
		{"5.7.x", []*Reply{r(535, "5.7.8"), r(550, "5.7.1"), r(554, "5.7.0")}, []*Reply{r(550, "5.1.1"), r(454, "4.7.0"), r(535, ""), nil}},
		{"5.7.*", []*Reply{r(535, "5.7.8")}, []*Reply{r(550, "5.1.1")}},
		{"5", []*Reply{r(550, "5.1.1"), r(550, "")}, []*Reply{r(451, "4.3.0"), r(0, "")}},
		{"5.x.x", []*Reply{r(550, "5.1.1"), r(554, "")}, []*Reply{r(421, "")}},
		{"4.7.0", []*Reply{r(454, "4.7.0")}, []*Reply{r(454, "4.7.1")}},
		{"5.1.10", []*Reply{r(550, "5.1.10")}, []*Reply{r(550, "5.1.1")}},
		{"550", []*Reply{r(550, "5.1.1")}, []*Reply{r(551, "5.1.1")}},
		{"5xx", []*Reply{r(535, "5.7.8"), r(550, "")}, []*Reply{r(451, "")}},
		{"55X", []*Reply{r(554, "")}, []*Reply{r(535, "")}},
	}
	for _, tt := range tests {
		c, err := ParseReplyClass(tt.pattern)
		if err != nil {
			t.Errorf("%s: %v", tt.pattern, err)
			continue
		}
		for _, rep := range tt.match {
			if !c.Match(rep) {
				t.Errorf("%s does not match %v", tt.pattern, rep)
			}
		}
		for _, rep := range tt.miss {
			if c.Match(rep) {
				t.Errorf("%s matches %v", tt.pattern, rep)
			}
		}
	}
	for _, bad := range []string{"", "6.7.x", "5.7.x.1", "5.a.1", "5.1234.1", "abc", "650", "5.7.-1"} {
		if _, err := ParseReplyClass(bad); !errors.Is(err, ErrBadClass) {
			t.Errorf("ParseReplyClass(%q) = %v, want ErrBadClass", bad, err)
		}
	}
	if !(ReplyClass{}).Match(nil) {
		t.Error("the zero class must match everything")
	}
}

// TestOldRecordsStillDecode: a record written before holds and history
// existed reads back with none of either.
func TestOldRecordsStillDecode(t *testing.T) {
	m, err := decodeMessage([]byte(`{"id":"X","from":"a@x.org","recipients":[{"address":"b@x.org","status":"queued","attempts":0}],` +
		`"submitter":{"uid":0},"created":"2026-11-20T00:00:00Z","size":3,"attempts":0,"next_attempt":"2026-11-20T00:00:00Z"}`))
	if err != nil || m.Held || m.History != nil || m.State() != StateQueued || !m.LifetimeStart().Equal(m.Created) {
		t.Fatalf("decoded %+v, %v", m, err)
	}
}

// TestRequeueAllInBatches: dead requeue --all, two dead letters a commit
// here, brings every dead letter back once, across the batches, and each
// message is due at once: seven come back and are leased; the dead letters
// are gone; a message flushed before one of its recipients died comes back
// with its schedule entry where it was (no stale entry left: Check).
func TestRequeueAllInBatches(t *testing.T) {
	clk := newClock()
	q, _ := openTest(t, Options{Now: clk.Now})
	var ids []string
	for i := range 7 {
		ids = append(ids, put(t, q, "x\r\n", fmt.Sprintf("r%d@x.org", i)))
		fail(t, q, reply550, fmt.Sprintf("r%d@x.org", i))
	}
	half := put(t, q, "half\r\n", "dead@x.org", "live@x.org")
	l := leaseOne(t, q)
	if _, err := q.Record(l, []Outcome{{Address: "dead@x.org", Result: Failed, Reply: reply550},
		{Address: "live@x.org", Result: Deferred, Reply: reply451, NextAttempt: clk.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if due, err := q.RetryAll(); err != nil || due != 1 {
		t.Fatalf("RetryAll: %d, %v", due, err)
	}
	clk.Advance(time.Minute)
	res, err := q.requeueAll(ReplyClass{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		if r.Err != nil {
			t.Errorf("%s: %v", r.ID, r.Err)
		}
		got = append(got, r.ID)
	}
	if want := append(slices.Clone(ids), half); !slices.Equal(got, want) {
		t.Fatalf("requeued %v, want %v", got, want)
	}
	if dead, _ := q.ListDead(); len(dead) != 0 {
		t.Fatalf("%d dead letters left", len(dead))
	}
	if problems := q.Check(); len(problems) > 0 {
		t.Fatalf("check after the requeue: %v", problems)
	}
	if ls, _ := q.Lease(10); len(ls) != 8 {
		t.Fatalf("leased %d after the requeue, want 8", len(ls))
	}
}
