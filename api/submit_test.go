package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/queue"
	"relayq/rewrite"
	"relayq/spool"
)

func simple(to ...string) Message {
	return Message{From: "app@example.com", To: addressList(to), Subject: "hi", Text: ptr("hello")}
}

// TestIdempotentRetry: the same key and body gets the first answer and
// queues nothing more; another body under the key gets 409; the key of
// one socket user is not another's.
func TestIdempotentRetry(t *testing.T) {
	e := newEnv(t, envOptions{})
	key := map[string]string{"Idempotency-Key": "order-42"}
	first := e.postJSON(simple("u@example.org"), key)
	again := e.postJSON(simple("u@example.org"), key)
	if first.status != 202 || again.status != 202 || first.str("id") != again.str("id") || first.str("message_id") != again.str("message_id") {
		t.Fatalf("first %d %s, again %d %s", first.status, first.raw, again.status, again.raw)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Error("replay not marked")
	}
	other := e.postJSON(simple("v@example.org"), key)
	if other.status != http.StatusConflict || other.errField("code") != "idempotency_key_reused" {
		t.Errorf("different body: %d %s", other.status, other.raw)
	}
	if n, _ := e.q.Count(); n.Messages != 1 {
		t.Errorf("%d messages queued, want 1", n.Messages)
	}
	if rec, _ := e.q.LookupKey(fmt.Sprintf("uid %d:order-42", os.Getuid())); rec == nil || rec.ID != first.str("id") {
		t.Errorf("stored key %+v", rec)
	}
}

// TestIdempotentConcurrent: duplicates sent at once all get the one
// queue ID, and one message is queued.
func TestIdempotentConcurrent(t *testing.T) {
	e := newEnv(t, envOptions{})
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, "http://api/v1/messages", strings.NewReader(`{"from":"a@example.com","to":"b@example.org","text":"x"}`))
			req.Header.Set("Idempotency-Key", "same")
			resp, err := e.unix.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			if resp.StatusCode == 202 {
				ids[i] = b.String()
			}
		}()
	}
	wg.Wait()
	for i := range ids {
		if ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("answers differ: %q", ids)
		}
	}
	if c, _ := e.q.Count(); c.Messages != 1 {
		t.Errorf("%d messages queued, want 1", c.Messages)
	}
}

// TestIdempotencyExpires: past the window the key is forgotten (and
// pruned), so the same request queues again.
func TestIdempotencyExpires(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, envOptions{queue: queue.Options{Now: clock, IdempotencyWindow: time.Hour}})
	key := map[string]string{"Idempotency-Key": "k"}
	a := e.postJSON(simple("u@example.org"), key)
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if n, err := e.q.PruneKeys(100); n != 1 || err != nil {
		t.Errorf("pruned %d, %v", n, err)
	}
	b := e.postJSON(simple("u@example.org"), key)
	if a.status != 202 || b.status != 202 || a.str("id") == b.str("id") {
		t.Errorf("after the window: %s / %s", a.raw, b.raw)
	}
}

// TestRawSubmission: message/rfc822 with the envelope in the query is
// queued as given, with Received and a Message-ID added.
func TestRawSubmission(t *testing.T) {
	e := newEnv(t, envOptions{})
	raw := "From: a@example.com\nTo: b@example.org\nSubject: raw\n\nbody line\n"
	a := e.post("/v1/messages?from=a@example.com&to=b@example.org&to=c@example.org", "message/rfc822", []byte(raw), nil)
	if a.status != 202 {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	got := string(e.stored(a.str("id")))
	if !strings.HasPrefix(got, "Received: ") || !strings.Contains(got, "Message-ID: <"+a.str("message_id")+">\r\n") || !strings.HasSuffix(got, "\r\n\r\nbody line\r\n") {
		t.Errorf("stored:\n%s", got)
	}
	m, _ := e.q.Get(a.str("id"))
	if m == nil || len(m.Recipients) != 2 || m.From != "a@example.com" {
		t.Errorf("envelope %+v", m)
	}
	if a := e.post("/v1/messages", "message/rfc822", []byte(raw), nil); a.status != 400 || a.errField("field") != "to" {
		t.Errorf("no recipients: %d %s", a.status, a.raw)
	}
}

// TestIntakePolicy: API submissions meet the socket's policy: unknown
// recipients (aliases), max_recipients, max_message_size, and the
// submitter's [limits].
func TestIntakePolicy(t *testing.T) {
	rw := spool.Rewriting{Recipient: func(a string) ([]string, error) {
		if strings.HasPrefix(a, "nobody@") {
			return nil, fmt.Errorf("no such user")
		}
		if a == "root@localhost" {
			return []string{"ops@example.com"}, nil
		}
		return []string{a}, nil
	}}
	e := newEnv(t, envOptions{intake: spool.Options{Rewriting: rw, MaxRecipients: 3, MaxMessageSize: 4096,
		Limits: spool.Limits{Default: spool.Limit{MessagesPerHour: 3}}}})
	m := simple("u@example.org")
	m.Cc = addressList{"nobody@example.org"}
	if a := e.postJSON(m, nil); a.status != 422 || a.errField("code") != "unknown_recipient" || a.errField("field") != "cc" {
		t.Errorf("unknown recipient: %d %s", a.status, a.raw)
	}
	if a := e.postJSON(simple("a@x.org", "b@x.org", "c@x.org", "d@x.org"), nil); a.status != 422 || a.errField("code") != "too_many_recipients" {
		t.Errorf("too many recipients: %d %s", a.status, a.raw)
	}
	big := simple("u@example.org")
	big.Text = ptr(strings.Repeat("x", 5000))
	if a := e.postJSON(big, nil); a.status != 413 || a.errField("code") != "too_large" {
		t.Errorf("too large: %d %s", a.status, a.raw)
	}
	a := e.postJSON(simple("root"), nil) // a bare local name, as sendmail takes it
	if m, _ := e.q.Get(a.str("id")); a.status != 202 || m == nil || m.Recipients[0].Address != "ops@example.com" {
		t.Errorf("alias: %d %s", a.status, a.raw)
	}
	e.postJSON(simple("u@example.org"), nil)
	e.postJSON(simple("u@example.org"), nil)
	if a := e.postJSON(simple("u@example.org"), nil); a.status != 429 || a.header.Get("Retry-After") == "" {
		t.Errorf("over messages_per_hour: %d %s", a.status, a.raw)
	}
}

// TestLimits: attachment size, number of attachments, request size.
func TestLimits(t *testing.T) {
	e := newEnv(t, envOptions{api: Options{MaxAttachmentSize: 100, MaxAttachments: 2, MaxRequestSize: 2000}})
	m := simple("u@example.org")
	m.Attachments = []Attachment{{Filename: "a", Content: ptr(strings.Repeat("a", 101))}}
	if a := e.postJSON(m, nil); a.status != 413 || a.errField("code") != "attachment_too_large" || a.errField("field") != "attachments[0]" {
		t.Errorf("attachment size: %d %s", a.status, a.raw)
	}
	m.Attachments = []Attachment{{Content: ptr("1")}, {Content: ptr("2")}, {Content: ptr("3")}}
	if a := e.postJSON(m, nil); a.status != 413 || a.errField("code") != "too_many_attachments" {
		t.Errorf("attachment count: %d %s", a.status, a.raw)
	}
	m.Attachments = nil
	m.Text = ptr(strings.Repeat("t", 3000))
	if a := e.postJSON(m, nil); a.status != 413 || a.errField("code") != "too_large" {
		t.Errorf("request size: %d %s", a.status, a.raw)
	}
	if n, _ := e.q.Count(); n.Messages != 0 {
		t.Errorf("%d queued", n.Messages)
	}
}

// TestBadRequests: malformed input names the field.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, c := range []struct{ body, field string }{
		{`{"from":"not an address","to":"u@example.org"}`, "from"},
		{`{"to":"u@example.org"}`, "from"},
		{`{"from":"a@example.com"}`, "to"},
		{`{"from":"a@example.com","to":["ok@example.org","bad address"]}`, "to[1]"},
		{`{"from":"a@example.com","to":"u@example.org","headers":{"Bcc":"x@y.z"}}`, "headers.Bcc"},
		{`{"from":"a@example.com","to":"u@example.org","subject":"a\r\nBcc: x@y.z"}`, "subject"},
		{`{"from":"a@example.com","to":"u@example.org","headers":{"X-A":"a\r\nBcc: x@y.z"}}`, "headers.X-A"},
		{`{"from":"a@example.com","to":"u@example.org","attachments":[{"content":"%%","encoding":"base64"}]}`, "attachments[0].content"},
		{`{"from":"a@example.com","to":"u@example.org","attachments":[{"content":"a","path":"/x"}]}`, "attachments[0]"},
	} {
		a := e.post("/v1/messages", "application/json", []byte(c.body), nil)
		if a.status != 400 || a.errField("field") != c.field {
			t.Errorf("%s: %d %s", c.body, a.status, a.raw)
		}
	}
}

// TestTCPToken: the TCP listener wants the bearer token; the socket
// does not.
func TestTCPToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, c := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer " + testToken, 202}} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+e.srv.Addr()+"/v1/messages", strings.NewReader(`{"from":"a@example.com","to":"u@example.org","text":"x"}`))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		if a := e.do(http.DefaultClient, req); a.status != c.status {
			t.Errorf("%q: %d %s", c.auth, a.status, a.raw)
		}
	}
	if err := New(Options{Intake: e.srv.opts.Intake, Queue: e.q, Listen: "127.0.0.1:0"}).Start(); err == nil {
		t.Error("TCP listener started without a token")
	}
}

// TestSocketMode: the API socket has the mode it was given.
func TestSocketMode(t *testing.T) {
	e := newEnv(t, envOptions{api: Options{SocketMode: 0o660}})
	fi, err := os.Stat(e.socket)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket %v %v", fi.Mode(), err)
	}
	if err := New(Options{Intake: e.srv.opts.Intake, Queue: e.q, Socket: e.socket, SocketGID: -1}).Start(); err == nil {
		t.Error("a second server took a live socket")
	}
}

// TestShutdownRefuses: once intake shuts down, submissions get 503 with
// Retry-After.
func TestShutdownRefuses(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.srv.opts.Intake.Shutdown(context.Background())
	if a := e.postJSON(simple("u@example.org"), nil); a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Errorf("%d %s", a.status, a.raw)
	}
}

// TestConnectionCaps: connections over the per-caller cap get 503 with
// Retry-After at once, and the API still answers once they close.
func TestConnectionCaps(t *testing.T) {
	e := newEnv(t, envOptions{api: Options{MaxConnections: 8, MaxConnectionsPerCaller: 2}})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("unix", e.socket)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	c, err := net.Dial("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(reply), "HTTP/1.1 503 ") || !strings.Contains(string(reply), "Retry-After: 1") {
		t.Errorf("over the cap: %q", reply)
	}
	for _, c := range held {
		c.Close()
	}
	// Until the server has seen the held connections close, a new one
	// may still be over the cap: its 503 and close can come before the
	// request is written (a broken pipe), so a failed request is retried.
	waitUntil(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://api/v1/messages/1AAAAAAAAAAAAAAAAAAA", nil)
		resp, err := e.unix.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNotFound
	})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDefaultsApplied: [defaults] apply to API messages as to the socket's:
// a message without from gets the default From (and the envelope sender
// DefaultFrom), and a default header the message lacks; its own
// Reply-To wins over the default.
func TestDefaultsApplied(t *testing.T) {
	rules, err := rewrite.New(rewrite.Options{Domain: "example.com", Defaults: []rewrite.Field{
		{Name: "From", Value: "Robot <robot@example.com>"}, {Name: "Reply-To", Value: "ops@example.com"}, {Name: "X-Team", Value: "infra"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	rw := spool.Rewriting{Recipient: rules.Recipient, Message: rules.Message}
	e := newEnv(t, envOptions{intake: spool.Options{Rewriting: rw}, api: Options{DefaultFrom: "robot@example.com"}})
	a := e.post("/v1/messages", "application/json", []byte(`{"to":"u@example.org","reply_to":"me@example.org","text":"x"}`), nil)
	if a.status != 202 {
		t.Fatalf("%d %s", a.status, a.raw)
	}
	got := string(e.stored(a.str("id")))
	for _, want := range []string{"\r\nFrom: Robot <robot@example.com>\r\n", "\r\nReply-To: <me@example.org>\r\n", "\r\nX-Team: infra\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "ops@example.com") {
		t.Error("default Reply-To replaced the message's own")
	}
	if m, _ := e.q.Get(a.str("id")); m == nil || m.From != "robot@example.com" {
		t.Errorf("envelope sender %+v", m)
	}
}

// TestNoRoom: below min_free the API answers 507 with Retry-After and
// queues nothing.
func TestNoRoom(t *testing.T) {
	e := newEnv(t, envOptions{queue: queue.Options{MinFree: 1 << 60}})
	if a := e.postJSON(simple("u@example.org"), nil); a.status != 507 || a.header.Get("Retry-After") == "" {
		t.Errorf("%d %s", a.status, a.raw)
	}
}

// TestMaySee: a socket user sees the status of their own messages only;
// root, the daemon's user and the token holder see every message.
func TestMaySee(t *testing.T) {
	own, other := queue.Submitter{UID: 1234}, queue.Submitter{UID: 99}
	for _, c := range []struct {
		c    caller
		sub  queue.Submitter
		want bool
	}{
		{caller{uid: 1234}, own, true},
		{caller{uid: 1234}, other, os.Getuid() == 1234},
		{caller{uid: 0}, other, true},
		{caller{uid: os.Getuid()}, other, true},
		{caller{tcp: true, uid: -1}, other, true},
		{caller{uid: -1}, queue.Submitter{UID: -1}, os.Getuid() == -1},
	} {
		if got := c.c.maySee(c.sub); got != c.want {
			t.Errorf("%+v sees %+v: %v", c.c, c.sub, got)
		}
	}
}

// TestMemoryBudget: API requests reserve from intake's memory budget: a
// request larger than a submitter's share is refused (413), and while the
// budget is held by others a request gets 507 with Retry-After.
func TestMemoryBudget(t *testing.T) {
	e := newEnv(t, envOptions{intake: spool.Options{MaxMemory: 256 << 10, MaxMessageSize: 64 << 10, MemoryWait: 100 * time.Millisecond}})
	big := simple("u@example.org")
	big.Text = ptr(strings.Repeat("y", 200<<10))
	if a := e.postJSON(big, nil); a.status != 413 {
		t.Errorf("over the share: %d %s", a.status, a.raw)
	}
	other := e.srv.opts.Intake.HoldMemory(queue.Submitter{UID: 4242})
	defer other.Release()
	if err := other.Grow(128 << 10); err != nil {
		t.Fatal(err)
	}
	mine := e.srv.opts.Intake.HoldMemory(queue.Submitter{UID: os.Getuid(), Via: "api"})
	defer mine.Release()
	if err := mine.Grow(120 << 10); err != nil {
		t.Fatal(err)
	}
	small := simple("u@example.org")
	small.Text = ptr(strings.Repeat("z", 20<<10))
	if a := e.postJSON(small, nil); a.status != 507 || a.header.Get("Retry-After") == "" {
		t.Errorf("budget taken: %d %s", a.status, a.raw)
	}
	other.Release()
	mine.Release()
	if a := e.postJSON(small, nil); a.status != 202 {
		t.Errorf("budget free again: %d %s", a.status, a.raw)
	}
}
