package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// apiAnswer is a decoded answer of the HTTP API.
type apiAnswer struct {
	status int
	body   map[string]any
	raw    string
}

func (a apiAnswer) str(k string) string { s, _ := a.body[k].(string); return s }

func (d *daemon) apiSocket() string { return filepath.Join(d.dir, "api.sock") }

// apiDo sends a request over the daemon's API socket; err is a transport
// failure (the daemon is down).
func (d *daemon) apiDo(method, path, body string, header map[string]string) (apiAnswer, error) {
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.apiSocket())
	}}}
	req, _ := http.NewRequest(method, "http://relayq"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return apiAnswer{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := apiAnswer{status: resp.StatusCode, raw: string(raw)}
	json.Unmarshal(raw, &a.body)
	return a, nil
}

func (d *daemon) apiPost(t testing.TB, body string, header map[string]string) apiAnswer {
	t.Helper()
	a, err := d.apiDo(http.MethodPost, "/v1/messages", body, header)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// apiStatus is GET /v1/messages/ID: the state and each recipient's status
// and reply code.
func (d *daemon) apiStatus(t testing.TB, id string) (state string, rcpts map[string]string) {
	t.Helper()
	a, err := d.apiDo(http.MethodGet, "/v1/messages/"+id, "", nil)
	if err != nil || a.status != 200 {
		t.Fatalf("status of %s: %v %d %s", id, err, a.status, a.raw)
	}
	rcpts = map[string]string{}
	list, _ := a.body["recipients"].([]any)
	for _, x := range list {
		r, _ := x.(map[string]any)
		reply, _ := r["reply"].(map[string]any)
		rcpts[r["address"].(string)] = fmt.Sprintf("%v %v", r["status"], reply["code"])
	}
	return a.str("state"), rcpts
}

// TestAPIStatusLifecycle: app → relayq (API socket, JSON) → smtptest
// relay. GET /v1/messages/{id} follows a message that is deferred once
// (451) and then delivered, with the relay's reply, and one dead on 550
// with the reason.
func TestAPIStatusLifecycle(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Rcpt: map[string][]smtptest.Step{
		"later@example.org": smtptest.Times(3, smtptest.Reply(451, "4.3.0 Try later")),
		"gone@example.org":  {smtptest.Reply(550, "5.1.1 No such user")},
	}}})
	d := startDaemon(t, relay, func(s settings) { s.set("retry", "initial_interval", `"1s"`) })

	ok := d.apiPost(t, `{"from":"app@example.com","to":"later@example.org","subject":"s","text":"t"}`, nil)
	dead := d.apiPost(t, `{"from":"app@example.com","to":"gone@example.org","subject":"s","text":"t"}`, nil)
	if ok.status != 202 || dead.status != 202 {
		t.Fatalf("submissions: %s / %s", ok.raw, dead.raw)
	}
	if st, _ := d.apiStatus(t, ok.str("id")); st != "queued" && st != "active" && st != "deferred" {
		t.Errorf("right after submission: state %q", st)
	}
	waitFor(t, 20*time.Second, "a deferral with the relay's 451", func() bool {
		st, r := d.apiStatus(t, ok.str("id"))
		return st == "deferred" && r["later@example.org"] == "deferred 451"
	})
	waitFor(t, 30*time.Second, "delivered with the relay's 250", func() bool {
		st, r := d.apiStatus(t, ok.str("id"))
		return st == "delivered" && r["later@example.org"] == "delivered 250"
	})
	waitFor(t, 20*time.Second, "dead with the relay's 550", func() bool {
		st, r := d.apiStatus(t, dead.str("id"))
		return st == "dead" && r["gone@example.org"] == "dead 550"
	})
	if a, _ := d.apiDo(http.MethodGet, "/v1/messages/1AAAAAAAAAAAAAAAAAAA", "", nil); a.status != 404 && a.status != 400 {
		t.Errorf("unknown ID: %d %s", a.status, a.raw)
	}
}

// TestAPIIdempotentAcrossRestart: app → relayq (API socket) → relay. A
// retry with the same Idempotency-Key after a restart of the daemon gets
// the first answer; the relay gets the message once.
func TestAPIIdempotentAcrossRestart(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	body := `{"from":"app@example.com","to":"u@example.org","subject":"once","text":"exactly once"}`
	key := map[string]string{"Idempotency-Key": "invoice-7"}
	first := d.apiPost(t, body, key)
	d.restart()
	again := d.apiPost(t, body, key)
	if first.status != 202 || again.status != 202 || first.str("id") != again.str("id") || first.str("message_id") != again.str("message_id") {
		t.Fatalf("first %s, after restart %s", first.raw, again.raw)
	}
	if c := d.apiPost(t, strings.Replace(body, "once", "twice", 1), key); c.status != 409 {
		t.Errorf("other body under the key: %d %s", c.status, c.raw)
	}
	relay.WaitMessages(t, 1, 20*time.Second)
	d.waitQueueEmpty(t, 20*time.Second)
	if n := len(relay.Messages()); n != 1 {
		t.Errorf("relay got %d messages, want 1", n)
	}
}

// TestAPIKill9: apps → relayq (API socket, 4 at once, each with a key) →
// relay; relayq is killed with SIGKILL mid-stream and restarted. Every
// message answered 202 reaches the relay, and a retry of each 202'd key
// after the restart gets the same ID and queues nothing.
func TestAPIKill9(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	var mu sync.Mutex
	acked := map[string]string{} // key → queue ID
	msgIDs := map[string]string{}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range work {
				key := fmt.Sprintf("k%d", i)
				a, err := d.apiDo(http.MethodPost, "/v1/messages", fmt.Sprintf(`{"from":"app@example.com","to":"u@example.org","text":"n %d"}`, i), map[string]string{"Idempotency-Key": key})
				if err == nil && a.status == 202 {
					mu.Lock()
					acked[key], msgIDs[key] = a.str("id"), a.str("message_id")
					mu.Unlock()
				}
			}
		})
	}
	go func() {
		for i := range 200 {
			work <- i
		}
		close(work)
	}()
	waitFor(t, 30*time.Second, "40 acknowledged submissions", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 40 })
	d.kill()
	wg.Wait()
	d.start()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d of 200 acknowledged before the kill", len(acked))
	for key, id := range acked {
		i := strings.TrimPrefix(key, "k")
		a := d.apiPost(t, fmt.Sprintf(`{"from":"app@example.com","to":"u@example.org","text":"n %s"}`, i), map[string]string{"Idempotency-Key": key})
		if a.str("id") != id {
			t.Errorf("retry of %s after the kill: %s, first answer %s", key, a.raw, id)
		}
	}
	waitFor(t, 60*time.Second, "every acknowledged message at the relay", func() bool {
		got := map[string]bool{}
		for _, r := range relay.Messages() {
			got[string(r.Body)] = true
		}
		for _, m := range msgIDs {
			found := false
			for b := range got {
				if strings.Contains(b, "<"+m+">") {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	})
	d.waitQueueEmpty(t, 30*time.Second)
	d.stop()
	if res := d.relayq("queue", "check"); res.code != 0 {
		t.Errorf("queue check after the kill: %d %s%s", res.code, res.stdout, res.stderr)
	}
}

// TestAPISocketPermissions: the API socket takes the submission socket's
// mode, and refuses unknown local recipients as the socket does (422
// naming the field).
func TestAPISocketPermissions(t *testing.T) {
	d := startDaemon(t, nil, func(s settings) {
		s.set("submission", "socket_mode", `"0660"`)
		s.set("aliases", "unknown", `"refuse"`)
	})
	fi, err := os.Stat(d.apiSocket())
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("api.sock: %v %v", fi.Mode(), err)
	}
	a := d.apiPost(t, `{"from":"app@example.com","to":"ok@example.org","cc":"nosuchuser@localhost","text":"x"}`, nil)
	if a.status != 422 || !bytes.Contains([]byte(a.raw), []byte(`"field": "cc"`)) {
		t.Errorf("unknown local recipient: %d %s", a.status, a.raw)
	}
}

// TestAPITCPToken: app → relayq (API on loopback TCP with a bearer token
// from token_file). No token or a wrong one gets 401; with it the message
// is queued. File access is off on TCP by default while the socket, with
// the same file_roots, may attach the file.
func TestAPITCPToken(t *testing.T) {
	port := freePort(t)
	files, err := os.MkdirTemp("", "rqfiles")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(files) })
	os.WriteFile(filepath.Join(files, "r.txt"), []byte("report"), 0o644)
	token := "0123456789abcdef-token"
	d := newDaemon(t, nil, func(s settings) {
		s.set("api", "listen", tomlString(fmt.Sprintf("127.0.0.1:%d", port)))
		s.set("api", "file_roots", fmt.Sprintf("[%s]", tomlString(files)))
	})
	tokenFile := filepath.Join(d.dir, "api-token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	d.settings.set("api", "token_file", tomlString(tokenFile))
	d.writeConfig()
	d.start()

	withFile := fmt.Sprintf(`{"from":"app@example.com","to":"u@example.org","text":"x","attachments":[{"path":%q}]}`, filepath.Join(files, "r.txt"))
	post := func(auth, body string) apiAnswer {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/messages", port), strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return apiAnswer{status: resp.StatusCode, raw: string(raw)}
	}
	plain := `{"from":"app@example.com","to":"u@example.org","text":"x"}`
	if a := post("", plain); a.status != 401 {
		t.Errorf("no token: %d %s", a.status, a.raw)
	}
	if a := post("Bearer wrong-token-wrong-token", plain); a.status != 401 {
		t.Errorf("wrong token: %d %s", a.status, a.raw)
	}
	if a := post("Bearer "+token, plain); a.status != 202 {
		t.Errorf("token: %d %s", a.status, a.raw)
	}
	if a := post("Bearer "+token, withFile); a.status != 400 || !strings.Contains(a.raw, "file_access_disabled") {
		t.Errorf("file over TCP: %d %s", a.status, a.raw)
	}
	if a := d.apiPost(t, withFile, nil); a.status != 202 {
		t.Errorf("file over the socket: %d %s", a.status, a.raw)
	}
}
