package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"relayq/queue"
	"relayq/spool"
)

// env is an API server on a temp socket (and 127.0.0.1:0 with a token)
// in front of a real intake and store.
type env struct {
	t      testing.TB
	q      *queue.Queue
	srv    *Server
	socket string
	unix   *http.Client
}

const testToken = "s3cret-token"

type envOptions struct {
	api    Options
	intake spool.Options
	queue  queue.Options
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), o.queue)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range q.Check() {
			t.Errorf("queue integrity: %v", p)
		}
		q.Close()
	})
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, bench := t.(*testing.B); bench {
		log = quiet()
	}
	o.intake.Queue, o.intake.Logger, o.intake.Hostname = q, log, "relay.test"
	intake := spool.NewServer(o.intake)
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := o.api
	a.Intake, a.Queue, a.Logger, a.Hostname = intake, q, log, "relay.test"
	a.Socket, a.SocketGID = filepath.Join(dir, "api.sock"), -1
	if a.Listen == "" {
		a.Listen = "127.0.0.1:0"
	}
	a.Token = testToken
	srv := New(a)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &env{t: t, q: q, srv: srv, socket: a.Socket, unix: unixClient(a.Socket)}
}

func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// answer is a decoded response.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (a answer) errField(k string) string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e[k].(string)
	return s
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

// post sends a JSON (or raw, with contentType) request over the socket.
func (e *env) post(path, contentType string, body []byte, header map[string]string) answer {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://api"+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return e.do(e.unix, req)
}

func (e *env) postJSON(msg any, header map[string]string) answer {
	e.t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.post("/v1/messages", "application/json", b, header)
}

func (e *env) get(path string) answer {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://api"+path, nil)
	return e.do(e.unix, req)
}

func (e *env) do(c *http.Client, req *http.Request) answer {
	e.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	json.Unmarshal(raw, &a.body)
	return a
}

// body returns the stored message of a queue ID.
func (e *env) stored(id string) []byte {
	e.t.Helper()
	b, err := io.ReadAll(e.q.Body(id))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// allowPort lets fetches reach 127.0.0.1 on the given test servers' ports only.
func allowPorts(urls ...string) func(netip.AddrPort) bool {
	ok := map[string]bool{}
	for _, u := range urls {
		ok[strings.TrimPrefix(u, "http://")] = true
	}
	return func(ap netip.AddrPort) bool { return ok[ap.String()] }
}

func ptr(s string) *string { return &s }

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// quiet is a logger for benchmarks.
func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
