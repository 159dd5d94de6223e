package tests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// End-to-end tests that no local user can take intake down for the others.

// flood opens n connections to the daemon's submission socket, all at
// once, and reads each one's greeting (within one shared deadline). It
// returns the greetings ("" where none came) and a function that closes
// the connections (called when the test ends if not before).
func flood(t *testing.T, d *daemon, n int) (greetings []string, end func()) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	end = func() {
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(end)
	for range n {
		c, err := net.DialTimeout("unix", d.submitSocket(), 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d of %d: %v", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	greetings = make([]string, n)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		line, _ := bufio.NewReader(c).ReadString('\n')
		greetings[i] = strings.TrimRight(line, "\r\n")
	}
	return greetings, end
}

// tally counts greetings: "220" for any 220, "421 4.7.0" for the refusal,
// anything else as it came ("" for none).
func tally(greetings []string) map[string]int {
	out := map[string]int{}
	for _, g := range greetings {
		switch {
		case strings.HasPrefix(g, "220 "):
			g = "220"
		case strings.HasPrefix(g, "421 4.7.0 "):
			g = "421 4.7.0"
		}
		out[g]++
	}
	return out
}

// dropMaildropFile writes a complete maildrop file (as `relayq sendmail`
// does with the daemon down: a temporary name, then a rename) for the
// running daemon to import, and returns its name.
func dropMaildropFile(t *testing.T, d *daemon, from string, to []string, body []byte) string {
	t.Helper()
	name := fmt.Sprintf("%016x-%032x", time.Now().UnixNano(), 7)
	tmp := filepath.Join(d.maildrop(), "tmp."+name)
	var b strings.Builder
	fmt.Fprintf(&b, "relayq-maildrop 1\nfrom <%s>\n", from)
	for _, r := range to {
		fmt.Fprintf(&b, "rcpt <%s>\n", r)
	}
	fmt.Fprintf(&b, "\n%s", body)
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.maildrop(), name)); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestMaildropMaxRecipients: a maildrop file with 50 recipients → relayq
// with max_recipients = 10 (the socket would refuse the 11th RCPT) → it is
// set aside as <name>.bad with a log line, and the relay never sees it;
// the file after it → smtptest relay as usual.
func TestMaildropMaxRecipients(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) { s.set("submission", "max_recipients", "10") })
	from := "cron@example.org"
	var many []string
	for i := range 50 {
		many = append(many, fmt.Sprintf("r%d@example.net", i))
	}
	bad := dropMaildropFile(t, d, from, many, newMessage(1, from, many, 3))
	one := []string{"one@example.net"}
	dropMaildropFile(t, d, from, one, newMessage(2, from, one, 3))
	got := relay.WaitMessages(t, 1, 30*time.Second)
	if len(got) != 1 || len(got[0].To) != 1 {
		t.Fatalf("relay got %d message(s), the first for %d recipients; want the one-recipient file only", len(got), len(got[0].To))
	}
	waitFor(t, 10*time.Second, "the file to be set aside", func() bool {
		_, err := os.Stat(filepath.Join(d.maildrop(), bad+".bad"))
		return err == nil
	})
	if set := d.logRecords("maildrop: file set aside, not imported"); len(set) != 1 || !strings.Contains(set[0]["why"], "50 recipients, more than max_recipients 10") {
		t.Errorf("log: %v, want one line naming max_recipients", set)
	}
	if n := len(relay.Messages()); n != 1 {
		t.Errorf("relay got %d messages, want 1", n)
	}
}

// TestIntakeConnectionsPerUser: one uid (the test's, root) holds 100 idle
// connections to the submission socket → relayq with
// max_connections_per_user = 20. Twenty are greeted, the other eighty get
// 421 4.7.0 at once; `relayq sendmail` run as nobody (another uid) still
// submits over the socket → smtptest relay.
func TestIntakeConnectionsPerUser(t *testing.T) {
	needRoot(t)
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "max_connections_per_user", "20")
		s.set("submission", "max_connections", "1000")
	})
	greetings, _ := flood(t, d, 100)
	got := tally(greetings)
	if got["220"] != 20 || got["421 4.7.0"] != 80 {
		t.Fatalf("greetings %v, want 20 greeted and 80 421 4.7.0", got)
	}
	bin := publicBin(t)
	openStateDir(t, d)
	from, to := "nobody@example.org", "rcpt@example.net"
	if r := asUser(bin, nobody, nobody, nil, newMessage(1, from, []string{to}, 3), "sendmail", "-c", d.config, "-f", from, to); r.code != 0 {
		t.Fatalf("sendmail as nobody while root holds its connections: %v", r)
	}
	relay.WaitMessages(t, 1, 15*time.Second)
	accepted := d.logRecords("accepted")
	if len(accepted) != 1 || accepted[0]["via"] != "socket" || accepted[0]["uid"] != strconv.Itoa(nobody) {
		t.Errorf("accepted: %v, want one message from uid %d via the socket", accepted, nobody)
	}
	if refused := d.logRecords("connection refused: too many connections"); len(refused) != 1 || refused[0]["limit"] != "max_connections_per_user" {
		t.Errorf("refusals logged %v, want one line (repeats held back) naming max_connections_per_user", refused)
	}

	// root, over its own cap, is turned away with 421: its sendmail
	// leaves the message in the maildrop instead of failing (exit 75, a
	// cron job's mail dropped), and the daemon imports it as root's.
	if r := d.sendmail(newMessage(2, "root@example.org", []string{to}, 3), "-v", "-f", "root@example.org", to); r.code != 0 || !strings.Contains(r.stdout, "queued in the maildrop") {
		t.Fatalf("sendmail as root over its connection cap: %v, want exit 0 and the message in the maildrop", r)
	}
	relay.WaitMessages(t, 2, 30*time.Second)
	var imported []map[string]string
	waitFor(t, 10*time.Second, "the import's log line", func() bool {
		imported = d.logRecords("accepted")
		return len(imported) == 2
	})
	if imported[1]["via"] != "maildrop" || imported[1]["uid"] != "0" {
		t.Errorf("accepted: %v, want the second from uid 0 via the maildrop", imported)
	}
}

// TestLoopbackConnectionsPerUser: two local users on relayq's loopback
// listener, with max_connections_per_user = 4 and [limits]
// messages_per_hour = 1. root (the test) holds four connections, from
// 127.0.0.1 to 127.0.0.4, and sends one message on the first; its fifth
// connection, from 127.0.0.5, gets 421 4.7.0, and its second MAIL FROM
// 452 4.7.0 naming uid 0. swaks run as nobody → relayq (the same listener)
// → smtptest relay is greeted and its message taken meanwhile: each TCP
// client counts as the uid that owns its socket, for the cap and the
// limits, not all TCP clients as one. The log and the Received header
// name nobody's uid.
func TestLoopbackConnectionsPerUser(t *testing.T) {
	needRoot(t)
	swaks := needTool(t, "swaks", "swaks")
	relay := smtptest.NewServer(t, smtptest.Options{})
	port := freePort(t)
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "listen", fmt.Sprintf(`["127.0.0.1:%d"]`, port))
		s.set("submission", "max_connections_per_user", "4")
		s.set("limits", "messages_per_hour", "1")
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	from := func(src string) net.Conn {
		dialer := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := dialer.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connect from %s: %v", src, err)
		}
		nc.SetDeadline(time.Now().Add(time.Minute))
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	var held []*smtp.Client
	for i := 1; i <= 4; i++ {
		c := smtp.NewClient(from(fmt.Sprintf("127.0.0.%d", i)))
		if err := c.Hello("tests.localhost"); err != nil {
			t.Fatalf("root's connection %d of 4: %v, want 220 and 250", i, err)
		}
		held = append(held, c)
	}
	rcpt := []string{"rcpt@example.net"}
	if err := sendOn(held[0], "root@example.org", rcpt, newMessage(1, "root@example.org", rcpt, 3)); err != nil {
		t.Fatalf("root's first message: %v", err)
	}
	if greeting, _ := readReply(bufio.NewReader(from("127.0.0.5"))); !strings.HasPrefix(greeting, "421 4.7.0") {
		t.Errorf("root's fifth connection, from 127.0.0.5: greeted %q, want 421 4.7.0", greeting)
	}
	err := held[1].Mail("root@example.org", nil)
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) || reply.Code != 452 || !strings.HasPrefix(reply.Message, "Too many messages from uid 0:") {
		t.Errorf("root's second MAIL FROM: %v, want 452 4.7.0 naming uid 0", err)
	}

	res := asUser(swaks, nobody, nobody, nil, nil, "--server", "127.0.0.1", "--port", strconv.Itoa(port),
		"--from", "nobody@example.org", "--to", rcpt[0], "--header", "X-Seq: 2", "--body", "sent by nobody")
	if res.code != 0 || !queuedAs.MatchString(res.stdout) {
		t.Fatalf("swaks as nobody while root holds its connections: %v, want exit 0 and a \"queued as\" reply", res)
	}
	got := relay.WaitMessages(t, 2, 15*time.Second)
	for _, m := range got {
		field, _, _ := relayqReceived(m.Body)
		if seqOf(m.Body) == 2 && !bytes.Contains(field, []byte(fmt.Sprintf("(relayq, from userid %d)", nobody))) {
			t.Errorf("nobody's message: Received %q, want it to name uid %d", field, nobody)
		}
	}
	accepted := d.logRecords("accepted")
	if len(accepted) != 2 || accepted[0]["uid"] != "0" || accepted[1]["uid"] != strconv.Itoa(nobody) || accepted[1]["via"] != "tcp" {
		t.Errorf("accepted: %v, want root's then nobody's (uid %d) via tcp", accepted, nobody)
	}
	if refused := d.logRecords("connection refused: too many connections"); len(refused) != 1 || refused[0]["submitter"] != "uid 0" {
		t.Errorf("refusals logged %v, want one naming uid 0", refused)
	}
}

// sendOn sends one message on c, a client past EHLO.
func sendOn(c *smtp.Client, from string, to []string, body []byte) error {
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return fmt.Errorf("RCPT: %w", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return w.Close()
}

// TestSendmailBurstOverTheCap: 60 `sendmail` calls at once from one uid
// against max_connections_per_user = 4 (cron starting many jobs' mail in
// the same second). Every call exits 0 — those the daemon turns away with
// 421 leave their message in the maildrop — and the relay gets each of the
// 60 exactly once.
func TestSendmailBurstOverTheCap(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "max_connections_per_user", "4")
	})
	const n = 60
	from, to := "burst@example.org", "rcpt@example.net"
	results := make(chan cmdResult, n)
	for i := range n {
		go func() { results <- d.sendmail(newMessage(i, from, []string{to}, 3), "-f", from, to) }()
	}
	for range n {
		if r := <-results; r.code != 0 {
			t.Errorf("sendmail in the burst: %v, want exit 0", r)
		}
	}
	relay.WaitMessages(t, n, 60*time.Second)
	time.Sleep(time.Second) // a duplicate would come in this time
	count := map[int]int{}
	for _, r := range relay.Messages() {
		count[seqOf(r.Body)]++
	}
	for i := range n {
		if count[i] != 1 {
			t.Errorf("message %d reached the relay %d times, want once", i, count[i])
		}
	}
	if len(count) != n {
		t.Errorf("the relay got %d distinct messages, want %d: %v", len(count), n, count)
	}
}

// TestIntakeDescriptorReserve: the test's uid opens 1,000 idle connections
// to the submission socket of a relayq whose caps would allow them all but
// whose RLIMIT_NOFILE (lowered with prlimit on the running daemon) is 256.
// Intake turns away (421 4.7.0) those that would eat into the descriptors
// it keeps for the rest of the daemon, so that meanwhile `relayq status`
// (control socket) answers, a file in the maildrop is imported and
// delivered, and once the flood ends the socket takes mail again.
func TestIntakeDescriptorReserve(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatal("prlimit (util-linux) not installed")
	}
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "max_connections_per_user", "5000")
		s.set("submission", "max_connections", "5000")
	})
	pid := strconv.Itoa(d.running().cmd.Process.Pid)
	if out, err := exec.Command("prlimit", "--pid", pid, "--nofile=256:256").CombinedOutput(); err != nil {
		t.Fatalf("prlimit --nofile=256:256: %v: %s", err, out)
	}
	const n = 1000
	greetings, end := flood(t, d, n)
	got := tally(greetings)
	if got["220"]+got["421 4.7.0"] != n || got["220"] < 100 || got["421 4.7.0"] == 0 {
		t.Errorf("greetings %v, want each of %d either greeted (at least 100) or refused with 421 4.7.0", got, n)
	}

	if r := d.relayq("status"); r.code != 0 {
		t.Errorf("relayq status during the flood: %v", r)
	}
	from, to := "maildrop@example.org", "rcpt@example.net"
	body := newMessage(1, from, []string{to}, 3)
	dropMaildropFile(t, d, from, []string{to}, body)
	relay.WaitMessages(t, 1, 30*time.Second)

	end()
	var err error
	waitFor(t, 30*time.Second, "the socket to take mail after the flood", func() bool {
		_, err = submitSMTP("unix", d.submitSocket(), from, []string{to}, newMessage(2, from, []string{to}, 3))
		return err == nil
	})
	relay.WaitMessages(t, 2, 30*time.Second)
}

// TestListenerWarning: relayq with a loopback listener and a socket kept to
// one group says at start, as a warning, that the listener takes mail from
// every local user: socket_mode and socket_group do not reach it.
func TestListenerWarning(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, nil, func(s settings) {
		s.set("submission", "listen", fmt.Sprintf("[%q]", addr))
		s.set("submission", "socket_mode", `"0660"`)
	})
	warned := d.logRecords("submission listener accepts mail from every local user and process: socket_mode and socket_group do not apply to it")
	if len(warned) != 1 || warned[0]["level"] != "WARN" || warned[0]["listen"] != addr || warned[0]["socket_mode"] != "0660" {
		t.Errorf("start-up warnings %v, want one WARN naming %s and socket_mode 0660", warned, addr)
	}
}

// TestReadTimeout (catalogue D6, its second point): relayq with
// [submission] read_timeout = "2s" (idle_timeout left at 1m). A client on
// the socket sends EHLO and MAIL FROM, then nothing: relayq answers "421
// 4.4.2" and closes the connection, no sooner than 2 s after the MAIL and
// well within 20 s; nothing of it is queued. Meanwhile a client on a
// second connection, in its own transaction, sends a NOOP every half
// second for 4 s, then its message: it is not cut off, and its message is
// delivered. A reload that changes read_timeout is named in the warning
// for settings that need a restart, like the other intake timeouts, and
// the 2 s stays in force.
func TestReadTimeout(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) { s.set("submission", "read_timeout", `"2s"`) })

	active := make(chan error, 1)
	from, to := "busy@example.org", []string{"rcpt@example.net"}
	body := newMessage(1, from, to, 5)
	silentFor := func() (time.Duration, string) {
		t.Helper()
		nc, err := net.DialTimeout("unix", d.submitSocket(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(nc)
		for _, cmd := range []string{"", "EHLO tests.localhost", "MAIL FROM:<silent@example.org>"} {
			if cmd != "" {
				fmt.Fprintf(nc, "%s\r\n", cmd)
			}
			if reply, err := readReply(r); err != nil || reply[0] != '2' {
				t.Fatalf("%q: %q, %v", cmd, reply, err)
			}
		}
		silent := time.Now()
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			last = strings.TrimSpace(line)
		}
		return time.Since(silent), last
	}
	go func() { active <- submitWithNoops(d.submitSocket(), from, to, body, 4*time.Second) }()
	after, last := silentFor()
	t.Logf("silent client cut off %v after its MAIL FROM: %q", after.Round(10*time.Millisecond), last)
	if !strings.HasPrefix(last, "421 4.4.2") || after < 1900*time.Millisecond || after > 20*time.Second {
		t.Errorf("silent client got %q after %v, want 421 4.4.2 after read_timeout 2s and within 20s", last, after)
	}
	if err := <-active; err != nil {
		t.Errorf("active client on a second connection: %v, want its message taken", err)
	}
	relay.WaitMessages(t, 1, 20*time.Second)
	d.waitQueueEmpty(t, 10*time.Second)
	for _, m := range relay.Messages() {
		if m.From != from {
			t.Errorf("relay got a message from <%s>, want only the active client's", m.From)
		}
	}

	d.settings.set("submission", "read_timeout", `"1m"`)
	d.writeConfig()
	if res := runCmd(relayqBin, nil, "reload", "-c", d.config); res.code != 0 {
		t.Fatalf("relayq reload: %v", res)
	}
	warned := false
	for _, r := range d.logRecords("reload: this setting changes only when relayq restarts; the old value stays in force") {
		warned = warned || r["key"] == "submission.read_timeout"
	}
	if !warned {
		t.Error("the reload did not warn that submission.read_timeout needs a restart")
	}
	if after, last := silentFor(); !strings.HasPrefix(last, "421 4.4.2") || after > 20*time.Second {
		t.Errorf("after the reload, a silent client got %q after %v, want 421 4.4.2 within 20s (2s in force until a restart)", last, after)
	}
}

// submitWithNoops sends one message on the socket at path, sending NOOP
// every half second for busy between RCPT TO and DATA. It touches no
// testing.TB, so goroutines may call it.
func submitWithNoops(path, from string, to []string, body []byte, busy time.Duration) error {
	c, err := envelopeSMTP("unix", path, time.Minute, from, to)
	if err != nil {
		return err
	}
	defer c.Close()
	for end := time.Now().Add(busy); time.Now().Before(end); {
		time.Sleep(500 * time.Millisecond)
		if err := c.Noop(); err != nil {
			return fmt.Errorf("NOOP inside the transaction: %w", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	return c.Quit()
}
