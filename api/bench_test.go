package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"relayq/queue"
	"relayq/spool"
)

// The cost of a submission over the API against the same message over the
// SMTP socket (spool.Submit, what sendmail does), each with one
// connection per message as sendmail and a curl call make; run in
// parallel so concurrent clients share the group commit (commits/op).
//
//	go test -run XXX -bench Submit -benchtime 2000x ./api

var benchText = strings.Repeat("A line of a notification, about seventy characters long or so...\n", 40)

func BenchmarkSubmitSMTP(b *testing.B) {
	e := newEnv(b, envOptions{})
	sock := filepath.Join(filepath.Dir(e.socket), "submit.sock")
	intake := spool.NewServer(spool.Options{Queue: e.q, Socket: sock, SocketGID: -1, Hostname: "relay.test", Logger: quiet()})
	if err := intake.Start(); err != nil {
		b.Fatal(err)
	}
	defer intake.Shutdown(context.Background())
	body := []byte("From: app@example.com\r\nTo: u@example.org\r\nSubject: hi\r\n\r\n" + strings.ReplaceAll(benchText, "\n", "\r\n"))
	env := queue.Envelope{From: "app@example.com", Recipients: []string{"u@example.org"}}
	run(b, e.q, func() error {
		_, err := spool.Submit(context.Background(), sock, env, body)
		return err
	})
}

func BenchmarkSubmitAPIJSON(b *testing.B) {
	e := newEnv(b, envOptions{})
	msg, _ := json.Marshal(Message{From: "app@example.com", To: addressList{"u@example.org"}, Subject: "hi", Text: &benchText})
	run(b, e.q, func() error { return benchPost(e, "application/json", "/v1/messages", msg) })
}

func BenchmarkSubmitAPIRaw(b *testing.B) {
	e := newEnv(b, envOptions{})
	raw := []byte("From: app@example.com\r\nTo: u@example.org\r\nSubject: hi\r\n\r\n" + strings.ReplaceAll(benchText, "\n", "\r\n"))
	run(b, e.q, func() error {
		return benchPost(e, "message/rfc822", "/v1/messages?from=app@example.com&to=u@example.org", raw)
	})
}

func benchPost(e *env, ct, path string, body []byte) error {
	c := unixClient(e.socket)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	req, _ := http.NewRequest(http.MethodPost, "http://api"+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return &apiError{Message: resp.Status}
	}
	return nil
}

func run(b *testing.B, q *queue.Queue, submit func() error) {
	b.SetParallelism(4)
	before := q.Stats()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := submit(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	after := q.Stats()
	b.ReportMetric(float64(after.Commits-before.Commits)/float64(b.N), "commits/op")
}
