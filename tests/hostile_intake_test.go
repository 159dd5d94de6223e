package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// TestDroppedSubmissionsLeaveNothing (reliability catalogue A4, and a
// hostile local user): one uid opens submissions on the unix socket and on
// a loopback TCP listener and hangs up in the middle of each — after MAIL,
// after RCPT, right after DATA's 354, and after 1 MiB of a body that never
// ends — 60 times, three at a time, against max_connections_per_user 3 and
// max_memory 4 MiB (one user may hold 2 MiB). TCP connections are reset
// (SO_LINGER 0), not closed. Nothing of them is queued or reaches the
// relay; the memory budget and the connection caps come back (status shows
// 0 bytes in flight), so that three whole messages of 0.45 MiB from the
// same uid at once, two on the socket and one over TCP, then get 250 and
// are delivered once each. (The uid's connections and its share of the
// memory, 2 MiB, are one over the socket and TCP: three messages of 1.5
// MiB at once would not fit in it.)
func TestDroppedSubmissionsLeaveNothing(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "listen", fmt.Sprintf("[%q]", listen))
		s.set("submission", "max_memory", `"4MiB"`)
		s.set("submission", "max_message_size", `"2MiB"`)
		s.set("submission", "max_connections_per_user", "3")
	})
	from, to := "hostile@example.org", []string{"rcpt@example.net"}
	partial := newMessage(0, from, to, 26500)[:1<<20]

	points := []string{"MAIL", "RCPT", "DATA", "body"}
	const rounds = 10
	var (
		mu       sync.Mutex
		problems []string
	)
	for round := range rounds {
		for _, network := range []string{"unix", "tcp"} {
			addr := d.submitSocket()
			if network == "tcp" {
				addr = listen
			}
			var wg sync.WaitGroup
			for i := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					at := points[(round+i)%len(points)]
					if err := dropSubmission(network, addr, from, to, at, partial); err != nil {
						mu.Lock()
						problems = append(problems, fmt.Sprintf("round %d, %s, drop after %s: %v", round, network, at, err))
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
		}
	}
	// A hostile client whose connection was turned away (the cap, while
	// the daemon had not yet seen an earlier hang-up) is not a failure of
	// the test; a budget or cap that never comes back is, below.
	t.Logf("%d of %d dropped sessions were turned away before the drop point", len(problems), rounds*2*3)
	for _, p := range problems {
		t.Log(p)
	}

	var inFlight int64 = -1
	waitFor(t, 10*time.Second, "the memory budget to come back to 0 in flight", func() bool {
		var st struct {
			Memory *struct {
				InFlight *int64 `json:"in_flight"`
			} `json:"memory"`
		}
		res := d.mustRelayq(t, "status", "--json")
		if json.Unmarshal([]byte(res.stdout), &st) != nil || st.Memory == nil || st.Memory.InFlight == nil {
			return false
		}
		inFlight = *st.Memory.InFlight
		return inFlight == 0
	})

	want := map[int][]byte{}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		want[i+1] = newMessage(i+1, "good@example.org", to, 8000)
		wg.Add(1)
		go func() {
			defer wg.Done()
			network, addr := "unix", d.submitSocket()
			if i == 2 {
				network, addr = "tcp", listen
			}
			_, errs[i] = submitSMTP(network, addr, "good@example.org", to, want[i+1])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("whole message %d after the dropped sessions: %v, want 250", i+1, err)
		}
	}
	relay.WaitMessages(t, len(want), 30*time.Second)
	d.waitQueueEmpty(t, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // a stray message would come right after
	checkDeliveredOnce(t, relay, want)
	if dead := d.deadList(t); len(dead) != 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dead), dead)
	}
}

// dropSubmission opens an SMTP session at network/addr and hangs up after
// the step at ("MAIL", "RCPT", "DATA" or "body": the data without its end),
// resetting a TCP connection. It returns an error only if the session did
// not get that far. It touches no testing.TB, so goroutines may call it.
func dropSubmission(network, addr, from string, to []string, at string, data []byte) error {
	nc, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	c := smtp.NewClient(nc)
	if err := c.Hello("tests.localhost"); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if err := c.Mail(from, nil); err != nil || at == "MAIL" {
		return err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return err
		}
	}
	if at == "RCPT" {
		return nil
	}
	w, err := c.Data()
	if err != nil || at == "DATA" {
		return err
	}
	_, err = w.Write(data)
	return err
}

// TestIdleConnectionsLetGo (catalogue D6): relayq with idle_timeout 1s and
// max_connections_per_user 4. One uid opens three connections to the
// submission socket and one to the loopback listener (one cap over both)
// and sends nothing after the greeting (two after EHLO); its fifth, on the
// socket or over TCP, is turned away with 421 4.7.0. Within a few seconds
// relayq closes the four idle ones, and the same uid's next submissions
// get 250: idle clients cannot keep the cap. A client that has given MAIL
// FROM is in a transaction and is not cut at idle_timeout: after a 2.5 s
// pause it finishes and its message is delivered.
func TestIdleConnectionsLetGo(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "listen", fmt.Sprintf("[%q]", listen))
		s.set("submission", "idle_timeout", `"1s"`)
		s.set("submission", "max_connections_per_user", "4")
	})
	type idler struct {
		nc     net.Conn
		r      *bufio.Reader
		opened time.Time
	}
	open := func(network, addr string, ehlo bool) (*idler, string) {
		t.Helper()
		nc, err := net.DialTimeout(network, addr, 10*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		c := &idler{nc: nc, r: bufio.NewReader(nc), opened: time.Now()}
		greeting, err := readReply(c.r)
		if err != nil || !ehlo || !strings.HasPrefix(greeting, "220") {
			return c, greeting
		}
		io.WriteString(nc, "EHLO tests.localhost\r\n")
		if reply, err := readReply(c.r); err != nil || !strings.HasPrefix(reply, "250") {
			t.Fatalf("EHLO: %q, %v", reply, err)
		}
		return c, greeting
	}
	var idlers []*idler
	for i, to := range [][2]string{{"unix", d.submitSocket()}, {"unix", d.submitSocket()}, {"unix", d.submitSocket()}, {"tcp", listen}} {
		c, greeting := open(to[0], to[1], i < 2)
		if !strings.HasPrefix(greeting, "220") {
			t.Fatalf("connection %d of 4 (%s): greeted %q, want 220", i+1, to[0], greeting)
		}
		idlers = append(idlers, c)
	}
	for _, to := range [][2]string{{"unix", d.submitSocket()}, {"tcp", listen}} {
		if _, greeting := open(to[0], to[1], false); !strings.HasPrefix(greeting, "421 4.7.0") {
			t.Errorf("fifth connection of the uid (%s) greeted %q, want 421 4.7.0", to[0], greeting)
		}
	}

	for i, c := range idlers {
		var last string
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				break
			}
			last = strings.TrimSpace(line)
		}
		after := time.Since(c.opened)
		t.Logf("idle connection %d closed by relayq after %v (last reply %q)", i+1, after.Round(10*time.Millisecond), last)
		if after < 900*time.Millisecond || after > 10*time.Second {
			t.Errorf("idle connection %d closed after %v, want after idle_timeout 1s and within seconds", i+1, after)
		}
	}
	// A client in a transaction pauses longer than idle_timeout.
	from, to := "pause@example.org", []string{"rcpt@example.net"}
	if err := sendPaused(listen, from, to, newMessage(1, from, to, 20), 2500*time.Millisecond); err != nil {
		t.Errorf("message with a 2.5 s pause inside the transaction: %v, want 250", err)
	}
	d.submit(t, "next@example.org", to, newMessage(2, "next@example.org", to, 5))
	relay.WaitMessages(t, 2, 20*time.Second)
	d.waitQueueEmpty(t, 10*time.Second)
	if n := len(relay.Messages()); n != 2 {
		t.Errorf("relay got %d messages, want 2", n)
	}
}

// sendPaused sends one message over TCP to addr, waiting pause after MAIL
// FROM and again after the first half of the data. It touches no
// testing.TB, so goroutines may call it.
func sendPaused(addr, from string, to []string, body []byte, pause time.Duration) error {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	nc.SetDeadline(time.Now().Add(time.Minute))
	c := smtp.NewClient(nc)
	defer c.Close()
	if err := c.Hello("tests.localhost"); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	time.Sleep(pause)
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return fmt.Errorf("RCPT after a pause: %w", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(body[:len(body)/2]); err != nil {
		return err
	}
	time.Sleep(pause)
	if _, err := w.Write(body[len(body)/2:]); err != nil {
		return fmt.Errorf("data after a pause: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	return c.Quit()
}

// TestRelayRestartsUnderLoad (catalogue I3): 300 messages submitted over
// the socket by 4 clients while relayq (8 workers, 4 relay connections)
// delivers them to an smtptest relay that takes 3 ms over its greeting,
// each MAIL, DATA and body, and closes every connection at once, without a reply, every 100 ms — at the
// greeting, mid-command, mid-DATA or after the dot, as a relay restarting
// does. Every acknowledged message arrives; one that arrives more than once
// has a delivery log line for each extra copy flagged
// possible_duplicate=true (the dot was sent and the reply lost); nothing
// is dead-lettered, and the queue ends empty.
func TestRelayRestartsUnderLoad(t *testing.T) {
	const n, clients = 300, 4
	slow := smtptest.Step{Delay: 3 * time.Millisecond}
	relay := smtptest.NewServer(t, smtptest.Options{
		Script: smtptest.Script{
			Greeting: smtptest.Times(10*n, slow),
			Mail:     smtptest.Times(10*n, slow),
			Data:     smtptest.Times(10*n, slow),
		},
		OnData: func(at smtptest.DataPoint, _ []byte) {
			if at == smtptest.DataRead {
				time.Sleep(3 * time.Millisecond)
			}
		},
	})
	d := startDaemon(t, relay, func(s settings) {
		s.set("delivery", "workers", "8")
		s.set("relay", "max_connections", "4")
	})
	stop := make(chan struct{})
	closerDone := make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				closerDone <- n
				return
			case <-tick.C:
				relay.CloseConnections()
				n++
			}
		}
	}()

	from, to := "restart@example.org", []string{"rcpt@example.net"}
	want := map[int][]byte{}
	ids := make([]string, n)
	errs := make([]error, n)
	for seq := range n {
		want[seq] = newMessage(seq, from, to, 10+seq%200)
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := c; seq < n; seq += clients {
				ids[seq], errs[seq] = submitSMTP("unix", d.submitSocket(), from, to, want[seq])
			}
		}()
	}
	wg.Wait()
	for seq, err := range errs {
		if err != nil {
			t.Fatalf("submission %d: %v", seq, err)
		}
	}
	waitFor(t, 90*time.Second, "every message to reach the relay", func() bool {
		seen := map[int]bool{}
		for _, m := range relay.Messages() {
			seen[seqOf(m.Body)] = true
		}
		return len(seen) == n
	})
	close(stop)
	closes := <-closerDone
	d.waitQueueEmpty(t, 30*time.Second)

	copies := map[int]int{}
	for _, m := range relay.Messages() {
		seq := seqOf(m.Body)
		copies[seq]++
		if w, ok := want[seq]; !ok {
			t.Errorf("relay got a message nobody sent (X-Seq %d)", seq)
		} else if !sameMessage(m.Body, w) {
			t.Errorf("message %d differs on the wire", seq)
		}
	}
	extra, attempts := 0, 0
	for seq := range n {
		lines := d.deliveryLog(ids[seq])
		attempts += len(lines)
		flagged := 0
		for _, l := range lines {
			if l["possible_duplicate"] == "true" {
				flagged++
			}
		}
		if copies[seq] > 1 {
			extra += copies[seq] - 1
		}
		if copies[seq]-1 > flagged {
			t.Errorf("message %d (%s) reached the relay %d times with %d attempts flagged possible_duplicate: %v", seq, ids[seq], copies[seq], flagged, lines)
		}
	}
	t.Logf("relay closed every connection %d times; %d connections, %d delivery log lines for %d messages, %d extra copies (each flagged)",
		closes, relay.Connections(), attempts, n, extra)
	if dead := d.deadList(t); len(dead) != 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dead), dead)
	}
}

// TestRelayRecipientLimit (catalogue C2): one message to five recipients →
// relayq → an SMTP relay that takes two recipients per transaction and
// answers the others 452 4.5.3 "too many recipients" (RFC 5321
// §4.5.3.1.10), three times in a row for the last one. Every recipient gets
// the message exactly once, in the transactions the relay allowed: the
// recipients already delivered are never sent again with the deferred ones,
// and nothing is dead-lettered.
func TestRelayRecipientLimit(t *testing.T) {
	rcpts := []string{"r1@example.net", "r2@example.net", "r3@example.net", "r4@example.net", "r5@example.net"}
	tooMany := smtptest.Reply(452, "4.5.3 Too many recipients")
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Rcpt: map[string][]smtptest.Step{
		rcpts[2]: {tooMany},
		rcpts[3]: {tooMany},
		rcpts[4]: {tooMany, tooMany, tooMany},
	}}})
	d := startDaemon(t, relay)
	from := "limit@example.org"
	body := newMessage(1, from, rcpts, 5)
	id := d.submit(t, from, rcpts, body)
	d.waitQueueEmpty(t, 30*time.Second)
	time.Sleep(300 * time.Millisecond) // a duplicate would come right after

	var batches [][]string
	got := map[string]int{}
	for _, m := range relay.Messages() {
		batches = append(batches, m.To)
		for _, r := range m.To {
			got[r]++
		}
		if !sameMessage(m.Body, body) {
			t.Errorf("body to %v differs", m.To)
		}
	}
	t.Logf("transactions: %v", batches)
	for _, r := range rcpts {
		if n := got[r]; n != 1 {
			t.Errorf("%s got the message %d times, want once", r, n)
		}
	}
	if len(batches) < 3 {
		t.Errorf("%d transactions %v, want at least 3 (two recipients at most in the first)", len(batches), batches)
	}
	if dead := d.deadList(t); len(dead) != 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dead), dead)
	}
	deferred := 0
	for _, l := range d.deliveryLog(id) {
		if l["status"] == "deferred" {
			deferred++
			if !strings.HasPrefix(l["reply"], "452 4.5.3") {
				t.Errorf("deferred without the relay's reply: %v", l)
			}
		}
	}
	if deferred != 5 {
		t.Errorf("%d deferred delivery log lines, want 5 (r3, r4 once, r5 three times)", deferred)
	}
}

// TestGiveUpAfterMaxLifetime (catalogue B3): SMTP on the unix socket →
// relayq with retry.max_lifetime 4s and [notify] bounce = "sender" → an
// smtptest relay that answers the recipient 451 4.3.0 every time. relayq
// is killed (SIGKILL) and restarted half-way: the lifetime counts from the
// submission, not from the start. Once it is over, the message is a dead
// letter (kept, never dropped) whose recipient still carries the relay's
// last 451 reply; the sender gets exactly one notice, naming the queue ID,
// with Status 4.4.7 (delivery time expired), the relay's 451 as it sent it
// for Diagnostic-Code (relayq's own words are not presented as the
// relay's), and a text for people that says it expired; and nothing
// reaches the recipient.
func TestGiveUpAfterMaxLifetime(t *testing.T) {
	slow := "slow@example.net"
	text := "4.3.0 <slow@example.net>: Temporary lookup failure"
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Rcpt: map[string][]smtptest.Step{slow: smtptest.Times(1000, smtptest.Reply(451, text))},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("retry", "max_lifetime", `"4s"`)
		s.set("notify", "bounce", `"sender"`)
	})
	from := "patient@example.org"
	submitted := time.Now()
	id := d.submit(t, from, []string{slow}, newMessage(1, from, []string{slow}, 3))
	time.Sleep(2 * time.Second)
	d.kill()
	d.start()
	dl := waitDead(t, d, id)
	died := time.Since(submitted)
	t.Logf("dead letter after %v: %+v", died.Round(100*time.Millisecond), dl)
	if died < 4*time.Second {
		t.Errorf("dead after %v, before max_lifetime 4s", died)
	}
	if len(dl.Recipients) != 1 || dl.Recipients[0].Address != slow || dl.Recipients[0].ReplyCode != 451 ||
		!strings.Contains(dl.Recipients[0].LastReply, "Temporary lookup failure") {
		t.Errorf("dead letter recipients %+v, want %s with the relay's last 451 reply", dl.Recipients, slow)
	}
	waitFor(t, 20*time.Second, "the notice at the relay", func() bool { return len(bounces(relay)) > 0 })
	time.Sleep(500 * time.Millisecond) // a second notice would come right after
	got := bounces(relay)
	if len(got) != 1 {
		t.Fatalf("relay got %d messages from <>, want exactly 1", len(got))
	}
	if len(got[0].To) != 1 || got[0].To[0] != from {
		t.Errorf("notice to %v, want %s", got[0].To, from)
	}
	if !bytes.Contains(got[0].Body, []byte(id)) {
		t.Error("the notice does not name the queue ID")
	}
	rcpts, human := readReport(t, got[0].Body)
	if len(rcpts) != 1 || rcpts[0].Get("Final-Recipient") != "rfc822; "+slow || rcpts[0].Get("Action") != "failed" ||
		rcpts[0].Get("Status") != "4.4.7" || rcpts[0].Get("Diagnostic-Code") != "smtp; 451 "+text {
		t.Errorf("notice's recipient fields %v, want %s failed, 4.4.7 (delivery time expired), with exactly the relay's 451 as Diagnostic-Code", rcpts, slow)
	}
	if want := "<" + slow + ">: message expired after 4s in the queue; the relay's last reply: 451 " + text; !strings.Contains(human, want) {
		t.Errorf("notice's text for people lacks %q:\n%s", want, human)
	}
	for _, m := range relay.Messages() {
		for _, r := range m.To {
			if r == slow {
				t.Errorf("%s received a message despite the 451s", slow)
			}
		}
	}
	d.waitQueueEmpty(t, 10*time.Second)
}

// TestRelayStopsReadingTheBody (catalogue D2): a 17.5 MiB message → relayq
// with relay.socket_timeout 2s → an smtptest relay that, on the first
// attempt, stops reading after 100 kB of the body, so that the TCP window
// fills and relayq's writes block. Meanwhile a small message goes through
// another connection. The stalled attempt is given up before the dot (a
// deferral, not a possible duplicate) within seconds, and the retry
// delivers the big message once, whole.
func TestRelayStopsReadingTheBody(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{
		Body: []smtptest.Step{{Fault: smtptest.Hang, AfterBytes: 100000}},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "max_message_size", `"32MiB"`)
		s.set("relay", "socket_timeout", `"2s"`)
	})
	from, to := "big@example.org", []string{"rcpt@example.net"}
	big := newMessage(1, from, to, 300000)
	t.Logf("message of %.1f MiB", float64(len(big))/(1<<20))
	start := time.Now()
	id := d.submit(t, from, to, big)
	waitFor(t, 10*time.Second, "the relay to stall on the first attempt", func() bool { return relay.DataAttempts() >= 1 })
	small := newMessage(2, from, to, 3)
	d.submit(t, from, to, small)
	relay.WaitMessages(t, 2, 60*time.Second)
	took := time.Since(start)
	d.waitQueueEmpty(t, 10*time.Second)
	checkDeliveredOnce(t, relay, map[int][]byte{1: big, 2: small})
	lines := d.deliveryLog(id)
	if len(lines) != 2 || lines[0]["status"] != "deferred" || lines[0]["possible_duplicate"] == "true" || lines[1]["status"] != "sent" {
		t.Errorf("delivery log of the big message %v, want one deferral (not a possible duplicate), then sent", lines)
	} else {
		t.Logf("stalled attempt: %s; delivered after %v", lines[0]["reply"], took.Round(100*time.Millisecond))
	}
}

// TestDuplicateRecipients (catalogue C4): one SMTP submission names
// dup@example.net, then dup@EXAMPLE.NET (the same mailbox: domains have no
// case) and Dup@example.net (another: the local part is case-sensitive).
// relayq → an LMTP relay whose first reply after the dot, for
// dup@example.net, is 550 and whose second, for Dup@example.net, is 250.
// The relay sees two RCPTs, not three; each outcome stays with its own
// recipient (go-smtp matches LMTP replies to recipients by address): dup@
// is a dead letter with the 550, Dup@ is delivered once.
func TestDuplicateRecipients(t *testing.T) {
	lower, upperDomain, upperLocal := "dup@example.net", "dup@EXAMPLE.NET", "Dup@example.net"
	relay := smtptest.NewServer(t, smtptest.Options{LMTP: true, Script: smtptest.Script{
		LMTP: map[string][]smtptest.Step{lower: {smtptest.Reply(550, "5.1.1 <dup@example.net> mailbox unknown")}},
	}})
	d := startDaemon(t, relay, func(s settings) {
		s.set("relay", "url", tomlString(relayURL(relay, true)))
	})
	from := "twice@example.org"
	rcpts := []string{lower, upperDomain, upperLocal}
	body := newMessage(1, from, rcpts, 5)
	id := d.submit(t, from, rcpts, body)
	dl := waitDead(t, d, id)
	d.waitQueueEmpty(t, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // a duplicate would come right after

	var rcptCmds []string
	for _, c := range relay.Commands() {
		if strings.HasPrefix(strings.ToUpper(c), "RCPT TO:") {
			rcptCmds = append(rcptCmds, c)
		}
	}
	if len(rcptCmds) != 2 {
		t.Errorf("relay got RCPT commands %q, want two (dup@example.net and Dup@example.net)", rcptCmds)
	}
	got := relay.Messages()
	if len(got) != 1 || len(got[0].To) != 1 || got[0].To[0] != upperLocal {
		var to [][]string
		for _, m := range got {
			to = append(to, m.To)
		}
		t.Errorf("relay delivered to %v, want once to [%s]", to, upperLocal)
	} else if !sameMessage(got[0].Body, body) {
		t.Errorf("body differs")
	}
	if len(dl.Recipients) != 1 || dl.Recipients[0].Address != lower || dl.Recipients[0].ReplyCode != 550 {
		t.Errorf("dead letter recipients %+v, want only %s with the 550", dl.Recipients, lower)
	}
}

// TestSighupStorm (catalogue J2, signals): 100 SIGHUPs 5 ms apart, while 4
// clients submit 200 messages and 8 workers deliver them,
// with the configuration switching the relay between two smtptest servers
// on every tenth signal (written to a new file renamed over the old one).
// relayq stays up (the same process), every message
// is acknowledged and delivered exactly once (to one relay or the other),
// and it still stops cleanly (exit 0).
func TestSighupStorm(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{})
	b := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, a, func(s settings) { s.set("delivery", "workers", "8") })
	pid := d.running().cmd.Process.Pid
	const n, clients = 200, 4
	from, to := "hup@example.org", []string{"rcpt@example.net"}
	want := map[int][]byte{}
	for seq := range n {
		want[seq] = newMessage(seq, from, to, 5)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := c; seq < n; seq += clients {
				_, errs[seq] = submitSMTP("unix", d.submitSocket(), from, to, want[seq])
			}
		}()
	}
	for i := range 100 {
		if i%10 == 0 {
			relay := a
			if i/10%2 == 0 {
				relay = b
			}
			d.settings.set("relay", "url", tomlString(relayURL(relay, false)))
			// As editors and configuration tools do: a SIGHUP must never
			// see the file half written (os.WriteFile truncates first).
			tmp := d.config + ".new"
			if err := os.WriteFile(tmp, []byte(d.settings.render()), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, d.config); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP %d: %v", i, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	for seq, err := range errs {
		if err != nil {
			t.Errorf("submission %d during the SIGHUPs: %v", seq, err)
		}
	}
	waitFor(t, 60*time.Second, "every message delivered", func() bool { return len(a.Messages())+len(b.Messages()) >= n })
	d.waitQueueEmpty(t, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	seen := map[int]int{}
	for _, m := range append(a.Messages(), b.Messages()...) {
		seen[seqOf(m.Body)]++
	}
	for seq := range n {
		if seen[seq] != 1 {
			t.Errorf("message %d delivered %d times, want once", seq, seen[seq])
		}
	}
	if p := d.running(); p == nil || p.cmd.Process.Pid != pid {
		t.Errorf("relayq is not the same process after the SIGHUPs")
	}
	t.Logf("%d messages to relay A, %d to B; %d reload lines", len(a.Messages()), len(b.Messages()), len(grepLines(d.log.String(), "reload")))
	if code := d.stop(); code != 0 {
		t.Errorf("stop after the SIGHUPs: exit %d", code)
	}
}
