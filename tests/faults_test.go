package tests

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// The fault tests script a smtptest relay to misbehave the way real relays
// and networks do, and check what SMTP says must follow: the message is
// deferred with a reason that names the fault, then delivered once (when
// the relay behaves), and the daemon keeps running and taking mail.

// faultSettings are short timeouts, so that a relay that hangs costs the
// test a second, not minutes.
func faultSettings(s settings) {
	s.set("relay", "connection_timeout", `"2s"`)
	s.set("relay", "greeting_timeout", `"500ms"`)
	s.set("relay", "socket_timeout", `"700ms"`)
}

// TestRelayFaults: SMTP on the unix socket → relayq → smtptest relay that
// fails at one point of the session a few times, then behaves. The first
// attempt is logged deferred with a reply that says what went wrong; the
// message reaches the relay exactly once, byte for byte; nothing is left in
// the queue or the dead letters; and the daemon still takes and delivers a
// second message.
func TestRelayFaults(t *testing.T) {
	drop, hang := smtptest.Step{Fault: smtptest.Drop}, smtptest.Step{Fault: smtptest.Hang}
	for _, tc := range []struct {
		name   string
		script smtptest.Script
		reason string // what the first deferred attempt's reply contains
		dup    bool   // the dot was sent: the attempt is a possible duplicate
		lines  int    // body lines; 0 means 40
	}{
		{"closes before the greeting", smtptest.Script{Greeting: smtptest.Times(2, drop)}, "greeting", false, 0},
		{"never greets", smtptest.Script{Greeting: []smtptest.Step{hang}}, "timeout", false, 0},
		{"stalls after MAIL", smtptest.Script{Mail: []smtptest.Step{hang}}, "timeout", false, 0},
		// 8 MB, more than the socket buffers hold: relayq is still
		// writing the body when the relay hangs up.
		{"closes mid-DATA", smtptest.Script{Body: []smtptest.Step{{Fault: smtptest.Drop, AfterBytes: 300}}}, "data", false, 100000},
		{"closes after the final dot", smtptest.Script{Body: []smtptest.Step{drop}}, "dot", true, 0},
		{"garbage greeting", smtptest.Script{Greeting: []smtptest.Step{{Raw: "HELLO THERE\r\n"}}}, "greeting", false, 0},
		{"garbage reply to MAIL", smtptest.Script{Mail: []smtptest.Step{{Raw: "2x0 what is this\r\n"}}}, "mail", false, 0},
		{"421 and close at MAIL", smtptest.Script{Mail: []smtptest.Step{smtptest.Reply(421, "4.3.2 Going down")}}, "421 4.3.2 Going down", false, 0},
		{"421 and close at RCPT", smtptest.Script{Rcpt: map[string][]smtptest.Step{"*": {smtptest.Reply(421, "4.4.5 Too busy")}}}, "421 4.4.5 Too busy", false, 0},
		{"421 and close after the dot", smtptest.Script{Body: []smtptest.Step{smtptest.Reply(421, "4.3.0 Trouble")}}, "421 4.3.0 Trouble", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			relay := smtptest.NewServer(t, smtptest.Options{Script: tc.script})
			d := startDaemon(t, relay, faultSettings, func(s settings) {
				if tc.lines > 0 {
					// Nothing hangs here, and the relay may take more than
					// faultSettings' 700 ms to answer the dot after a large
					// body on a busy machine: a timeout then would send it
					// twice.
					s.set("relay", "socket_timeout", `"10s"`)
				}
			})
			from, to := "fault@example.org", []string{"rcpt@example.net"}
			body := newMessage(1, from, to, cmp.Or(tc.lines, 40))
			id := d.submit(t, from, to, body)

			relay.WaitMessages(t, 1, 20*time.Second)
			waitFor(t, 5*time.Second, "the delivery to be logged sent", func() bool {
				lines := d.deliveryLog(id)
				return len(lines) > 0 && lines[len(lines)-1]["status"] == "sent"
			})
			lines := d.deliveryLog(id)
			first := lines[0]
			t.Logf("first attempt: %v", first)
			if len(lines) < 2 || first["status"] != "deferred" ||
				!strings.Contains(strings.ToLower(first["reply"]), strings.ToLower(tc.reason)) {
				t.Errorf("first attempt logged status=%q reply=%q (of %d attempts); want deferred, with a reply naming %q",
					first["status"], first["reply"], len(lines), tc.reason)
			}
			if got := first["possible_duplicate"] == "true"; got != tc.dup {
				t.Errorf("first attempt possible_duplicate=%v, want %v", got, tc.dup)
			}
			checkDeliveredOnce(t, relay, map[int][]byte{1: body})
			d.waitQueueEmpty(t, 5*time.Second)
			if dead := d.deadList(t); len(dead) != 0 {
				t.Errorf("dead letters after a temporary fault: %+v", dead)
			}
			stillServing(t, d, relay, 2)
		})
	}
}

// checkDeliveredOnce checks that the relay holds exactly one transaction
// per X-Seq in want, with want's body byte for byte.
func checkDeliveredOnce(t *testing.T, relay *smtptest.Server, want map[int][]byte) {
	t.Helper()
	seen := map[int]int{}
	for _, m := range relay.Messages() {
		seq := seqOf(m.Body)
		seen[seq]++
		if w, ok := want[seq]; !ok {
			t.Errorf("relay got a message nobody sent (X-Seq %d)", seq)
		} else if seen[seq] == 1 && !sameMessage(m.Body, w) {
			t.Errorf("message %d differs:\n got %q\nwant %q", seq, m.Body, w)
		}
	}
	for seq := range want {
		if seen[seq] != 1 {
			t.Errorf("message %d reached the relay %d times, want once", seq, seen[seq])
		}
	}
}

// stillServing checks that the daemon is still running, lists its queue,
// and takes and delivers one more message (X-Seq seq).
func stillServing(t *testing.T, d *daemon, relay *smtptest.Server, seq int) {
	t.Helper()
	if p := d.running(); p == nil {
		t.Fatal("daemon not running")
	} else {
		select {
		case <-p.done:
			t.Fatalf("relayq serve exited (%v)", p.err)
		default:
		}
	}
	before := len(relay.Messages())
	from, to := "after@example.org", []string{"rcpt@example.net"}
	body := newMessage(seq, from, to, 3)
	d.submit(t, from, to, body)
	got := relay.WaitMessages(t, before+1, 20*time.Second)
	if !sameMessage(got[before].Body, body) {
		t.Errorf("message after the fault differs:\n got %q\nwant %q", got[before].Body, body)
	}
	d.waitQueueEmpty(t, 5*time.Second)
}

// TestRelayTLSHandshakeFails: SMTP on the unix socket → relayq (trusting the
// relay's CA) → smtptest relay offering STARTTLS, whose handshake fails
// (it speaks only TLS 1.1, below relay.tls.min_version). The message is
// deferred at the TLS stage, never sent in clear; once the relay's TLS is
// fixed it is delivered, over TLS.
func TestRelayTLSHandshakeFails(t *testing.T) {
	t.Parallel()
	var fixed atomic.Bool
	relay := smtptest.NewServer(t, smtptest.Options{
		TLS: true,
		ConfigureTLS: func(c *tls.Config) {
			if !fixed.Load() {
				c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			}
		},
	})
	caFile := writeCA(t, relay)
	d := startDaemon(t, relay, faultSettings, func(s settings) {
		s.set("relay.tls", "ca_file", tomlString(caFile))
	})
	from, to := "tls@example.org", []string{"rcpt@example.net"}
	body := newMessage(1, from, to, 5)
	id := d.submit(t, from, to, body)

	r := waitDeferred(t, d, id)
	t.Logf("last reply: %q", r.LastReply)
	if !strings.Contains(strings.ToLower(r.LastReply), "tls") {
		t.Errorf("last reply %q, want it to name the TLS failure", r.LastReply)
	}
	if sawMail(relay) {
		t.Errorf("relay saw MAIL although TLS failed: %q", relay.Commands())
	}
	fixed.Store(true)
	got := relay.WaitMessages(t, 1, 20*time.Second)
	if !got[0].TLS {
		t.Error("delivered without TLS")
	}
	checkDeliveredOnce(t, relay, map[int][]byte{1: body})
	d.waitQueueEmpty(t, 5*time.Second)
	stillServing(t, d, relay, 2)
}

// writeCA writes the relay's certificate to a file relayq can trust.
func writeCA(t *testing.T, relay *smtptest.Server) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "relay-ca.pem")
	if err := os.WriteFile(f, relay.Certificate().CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRelayDNSFails: SMTP on the unix socket → relayq, whose relay host is
// a name that does not resolve (under .invalid, RFC 6761). The message is
// deferred with a reply naming the lookup failure, and the daemon keeps
// taking mail; restarted with the relay's address, it delivers both
// messages once each.
func TestRelayDNSFails(t *testing.T) {
	t.Parallel()
	relay := smtptest.NewServer(t, smtptest.Options{})
	_, port, _ := strings.Cut(relay.Addr(), ":")
	d := startDaemon(t, relay, faultSettings, func(s settings) {
		s.set("relay", "url", tomlString("smtp://relay.invalid:"+port))
		s.set("relay", "dns_timeout", `"2s"`)
		// Few lookups: the relay is paused after each failure.
		s.set("retry", "initial_interval", `"500ms"`)
	})
	from, to := "dns@example.org", []string{"rcpt@example.net"}
	bodies := map[int][]byte{}
	var ids []string
	for seq := 1; seq <= 2; seq++ {
		bodies[seq] = newMessage(seq, from, to, 5)
		ids = append(ids, d.submit(t, from, to, bodies[seq]))
	}
	r := waitDeferred(t, d, ids[0])
	t.Logf("last reply: %q", r.LastReply)
	if !strings.Contains(r.LastReply, "relay.invalid") {
		t.Errorf("last reply %q, want it to name the host that did not resolve", r.LastReply)
	}
	if n := relay.Connections(); n != 0 {
		t.Errorf("relay saw %d connections", n)
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d after SIGTERM", code)
	}
	d.settings.set("relay", "url", tomlString(relayURL(relay, false)))
	d.writeConfig()
	d.start()
	relay.WaitMessages(t, 2, 20*time.Second)
	checkDeliveredOnce(t, relay, bodies)
	d.waitQueueEmpty(t, 5*time.Second)
}

// TestSlowRelayBacklog: 300 messages over the unix socket from 8 clients →
// relayq → smtptest relay that waits 50ms before every reply. Every
// message is delivered exactly once, byte for byte, and the queue drains.
func TestSlowRelayBacklog(t *testing.T) {
	t.Parallel()
	const n, clients, delay = 300, 8, 50 * time.Millisecond
	slow := smtptest.Times(4*n, smtptest.Step{Delay: delay})
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Greeting: slow, Hello: slow, Mail: slow, Data: slow, Body: slow,
		Rcpt: map[string][]smtptest.Step{"*": slow},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("delivery", "workers", "8")
		s.set("relay", "max_connections", "8")
	})
	from, to := "slow@example.org", []string{"rcpt@example.net"}
	bodies := make(map[int][]byte, n)
	for seq := 1; seq <= n; seq++ {
		bodies[seq] = newMessage(seq, from, to, 5+seq%20)
	}
	start := time.Now()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1 + c; seq <= n; seq += clients {
				if _, err := submitSMTP("unix", d.submitSocket(), from, to, bodies[seq]); err != nil {
					errs <- fmt.Errorf("message %d: %w", seq, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	submitted := time.Since(start)
	relay.WaitMessages(t, n, 90*time.Second)
	d.waitQueueEmpty(t, 10*time.Second)
	t.Logf("%d messages: submitted in %v, delivered in %v over %d connections (at most %d at once)",
		n, submitted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), relay.Connections(), relay.MaxConcurrent())
	checkDeliveredOnce(t, relay, bodies)
	if dead := d.deadList(t); len(dead) != 0 {
		t.Errorf("%d dead letters from a slow relay", len(dead))
	}
}
