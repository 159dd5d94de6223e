package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// The named bad-input cases of issue 5. Each one has a defined outcome,
// accepted (and then delivered exactly as stated) or refused with a given
// code, and none of them may stop the daemon or damage the queue: every
// test ends by checking that the daemon still takes and delivers mail and
// that `relayq queue list` still answers.

// headerCRLF is a complete header with CRLF line endings, so that sendmail
// adds nothing and a test can state the delivered bytes exactly.
const headerCRLF = "From: <bad@example.org>\r\nDate: Mon, 2 Jan 2006 15:04:05 +0000\r\nMessage-ID: <bad.input@tests.relayq.example>\r\n"

// TestBadDataSMTP: SMTP on the unix socket, with the DATA section written
// byte for byte → relayq → smtptest relay. Bare LF and bare CR become CRLF;
// the sequences a lenient server would take for the end of data (SMTP
// smuggling) stay inside the one message, neutralised; NUL octets are
// refused; long lines, invalid UTF-8, a header alone and an empty message
// are taken and delivered as they came.
func TestBadDataSMTP(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	long := strings.Repeat("0123456789", 1000) // 10,000 characters
	smuggle := "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond"
	cases := []struct {
		name  string
		data  string // what is sent after the 354, the final "\r\n.\r\n" included
		reply string // prefix of the reply to the end of data
		want  string // the body the relay receives; "-" for nothing
	}{
		{"bare LF", "Subject: lf\n\nline 1\nline 2\r\n.\r\n", "250 2.0.0",
			"Subject: lf\r\n\r\nline 1\r\nline 2\r\n"},
		{"bare CR", "Subject: cr\r\rline 1\rline 2\r\n.\r\n", "250 2.0.0",
			"Subject: cr\r\n\r\nline 1\r\nline 2\r\n"},
		// A bare-LF "end of data" is text: it reaches the relay as a line
		// holding one dot (dot-stuffed on the wire), followed by the
		// would-be second transaction as text.
		{"LF dot LF smuggling", "Subject: s1\r\n\r\nfirst\n.\n" + smuggle + "\r\n.\r\n", "250 2.0.0",
			"Subject: s1\r\n\r\nfirst\r\n.\r\n" + smuggle + "\r\n"},
		// After a CRLF, ".\n" is a dot-stuffed line break: the dot goes,
		// as in net/textproto, and the LF becomes CRLF.
		{"CRLF dot LF smuggling", "Subject: s2\r\n\r\nfirst\r\n.\n" + smuggle + "\r\n.\r\n", "250 2.0.0",
			"Subject: s2\r\n\r\nfirst\r\n\r\n" + smuggle + "\r\n"},
		{"NUL octets", "Subject: nul\r\n\r\nbad\x00byte\r\n.\r\n", "554 5.6.0", "-"},
		{"lines of 10,000 characters", "Subject: long\r\n\r\n" + long + "\r\n" + long + "\r\n.\r\n", "250 2.0.0",
			"Subject: long\r\n\r\n" + long + "\r\n" + long + "\r\n"},
		{"invalid UTF-8", "Subject: \xff\xfe latin-1 caf\xe9\r\n\r\n\xc3\x28 \xed\xa0\x80 \xf8\xa1\xa1\xa1\xa1\r\n.\r\n", "250 2.0.0",
			"Subject: \xff\xfe latin-1 caf\xe9\r\n\r\n\xc3\x28 \xed\xa0\x80 \xf8\xa1\xa1\xa1\xa1\r\n"},
		{"header only", "Subject: only a header\r\nX-Note: no body\r\n.\r\n", "250 2.0.0",
			"Subject: only a header\r\nX-Note: no body\r\n"},
		// Queued empty, with the Received, Date and Message-ID the
		// intake adds: a header and no body.
		{"empty message", ".\r\n", "250 2.0.0", ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rcpt := fmt.Sprintf("case%d@example.net", i)
			reply, err := rawTransaction(d.submitSocket(), "bad@example.org", []string{rcpt}, strings.NewReader(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(reply, tc.reply) {
				t.Errorf("reply %q, want %q…", reply, tc.reply)
			}
		})
	}
	d.waitQueueEmpty(t, 15*time.Second)
	msgs := relay.Messages()
	for i, tc := range cases {
		got := receivedBy(msgs, fmt.Sprintf("case%d@example.net", i))
		switch {
		case tc.want == "-" && len(got) != 0:
			t.Errorf("%s: refused, but the relay received %q", tc.name, got[0].Body)
		case tc.want == "-":
		case len(got) != 1:
			t.Errorf("%s: the relay received %d messages, want 1", tc.name, len(got))
		case !sameMessage(got[0].Body, []byte(tc.want)):
			t.Errorf("%s: the relay received\n%q\nwant\n%q after relayq's Received", tc.name, got[0].Body, tc.want)
		}
	}
	for _, m := range msgs {
		if m.From != "bad@example.org" || slices.Contains(m.To, "victim@example.com") {
			t.Errorf("smuggled transaction reached the relay: %s → %q", m.From, m.To)
		}
	}
	stillServing(t, d, relay, 1)
}

// receivedBy returns the transactions that had rcpt among their recipients.
func receivedBy(msgs []smtptest.Received, rcpt string) []smtptest.Received {
	var out []smtptest.Received
	for _, m := range msgs {
		if slices.Contains(m.To, rcpt) {
			out = append(out, m)
		}
	}
	return out
}

// rawTransaction sends one transaction on relayq's unix socket at path,
// writing data after the 354 exactly as given (it must end the DATA
// section itself), and returns the reply to it. An earlier refusal is an
// error.
func rawTransaction(path, from string, rcpts []string, data io.Reader) (string, error) {
	nc, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(nc)
	steps := []exchange{{"", "220"}, {"EHLO tests.localhost", "250"}, {"MAIL FROM:<" + from + ">", "250"}}
	for _, rcpt := range rcpts {
		steps = append(steps, exchange{"RCPT TO:<" + rcpt + ">", "250"})
	}
	steps = append(steps, exchange{"DATA", "354"})
	for _, st := range steps {
		if st.send != "" {
			if _, err := io.WriteString(nc, st.send+"\r\n"); err != nil {
				return "", fmt.Errorf("send %q: %w", st.send, err)
			}
		}
		reply, err := readReply(r)
		if err != nil || !strings.HasPrefix(reply, st.expect) {
			return "", fmt.Errorf("after %q: %q, %v; want %s", st.send, reply, err, st.expect)
		}
	}
	if _, err := io.Copy(nc, data); err != nil {
		return "", fmt.Errorf("writing the data: %w", err)
	}
	reply, err := readReply(r)
	if err != nil {
		return "", fmt.Errorf("reading the reply to the data: %w", err)
	}
	io.WriteString(nc, "QUIT\r\n")
	return reply, nil
}

// TestBadAddressesSMTP: SMTP on the unix socket with addresses that are
// invalid UTF-8, or carry what would be a second command or header. Each is
// refused at MAIL or RCPT with 5xx; the transaction goes on for the valid
// recipient, and only that one gets the message.
func TestBadAddressesSMTP(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	dialog(t, "unix", d.submitSocket(), []exchange{
		{"", "220"},
		{"EHLO tests.localhost", "250"},
		{"MAIL FROM:<\xff\xfe@example.org>", "501 5.1.7"},
		{"MAIL FROM:<caf\xe9@example.org> SMTPUTF8", "501 5.1.7"},
		{"MAIL FROM:<ok@example.org>", "250"},
		{"RCPT TO:<\xc3\x28@example.net>", "501"},
		{"RCPT TO:<a@ex\xffample.net>", "501 5.1.3"},
		{"RCPT TO:<a@example.net\rRCPT TO:<evil@example.com>>", "501"},
		{"RCPT TO:<-oQ/tmp/x@example.net>", "501 5.1.3"},
		{"RCPT TO:<good@example.net>", "250"},
		{"DATA", "354"},
		{"Subject: after bad addresses\r\n\r\nbody\r\n.", "250 2.0.0"},
		{"QUIT", "221"},
	})
	got := relay.WaitMessages(t, 1, 15*time.Second)
	if len(got) != 1 || got[0].From != "ok@example.org" || !slices.Equal(got[0].To, []string{"good@example.net"}) {
		t.Errorf("relay received %+v; want one message from ok@example.org to good@example.net only", got)
	}
	d.waitQueueEmpty(t, 10*time.Second)
	stillServing(t, d, relay, 1)
}

// TestOversizedMessageStreamed: SMTP on the unix socket → relayq with
// max_message_size 10 MiB, sent a 100 MB message without SIZE. The reply is
// 552 5.3.4 once the data has ended; the daemon's memory does not grow by
// anything near the message's size (it keeps at most the limit); nothing is
// queued, and the daemon goes on taking mail.
func TestOversizedMessageStreamed(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "max_message_size", `"10MiB"`)
	})
	pid := d.running().cmd.Process.Pid
	before := peakRSS(t, pid)
	mb := []byte(strings.Repeat(strings.Repeat("x", 998)+"\r\n", 1000)) // 1 MB of whole lines
	parts := []io.Reader{strings.NewReader("Subject: huge\r\n\r\n")}
	for range 100 {
		parts = append(parts, bytes.NewReader(mb))
	}
	body := io.MultiReader(append(parts, strings.NewReader(".\r\n"))...)
	start := time.Now()
	reply, err := rawTransaction(d.submitSocket(), "big@example.org", []string{"big@example.net"}, body)
	if err != nil {
		t.Fatal(err)
	}
	after := peakRSS(t, pid)
	t.Logf("100 MB refused in %v; daemon peak RSS %d MiB before, %d MiB after", time.Since(start).Round(time.Millisecond), before>>20, after>>20)
	if !strings.HasPrefix(reply, "552 5.3.4") {
		t.Errorf("reply %q, want 552 5.3.4", reply)
	}
	if grew := after - before; grew > 64<<20 {
		t.Errorf("daemon peak RSS grew by %d MiB for a 100 MB message over a 10 MiB limit", grew>>20)
	}
	if q := d.queueList(t); len(q) != 0 {
		t.Errorf("refused message queued: %+v", q)
	}
	stillServing(t, d, relay, 1)
	if n := len(relay.Messages()); n != 1 {
		t.Errorf("relay received %d messages, want only the one sent after", n)
	}
}

// peakRSS is the VmHWM (peak resident set) of process pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// TestTenThousandRecipients: SMTP on the unix socket → relayq (default
// max_recipients 1000) → smtptest relay, with 10,000 RCPT commands. The
// first 1000 get 250, the other 9000 get 452 4.5.3 (RFC 5321 §4.5.3.1.8:
// the client sends those again in another transaction); the message is
// accepted and delivered to exactly the first 1000.
func TestTenThousandRecipients(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	const n, limit = 10000, 1000
	nc, err := net.DialTimeout("unix", d.submitSocket(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(nc)
	say := func(line string) string {
		t.Helper()
		if line != "" {
			if _, err := io.WriteString(nc, line+"\r\n"); err != nil {
				t.Fatalf("send %q: %v", shorten(line), err)
			}
		}
		reply, err := readReply(r)
		if err != nil {
			t.Fatalf("after %q: %v", shorten(line), err)
		}
		return reply
	}
	say("")
	say("EHLO tests.localhost")
	if reply := say("MAIL FROM:<many@example.org>"); !strings.HasPrefix(reply, "250") {
		t.Fatalf("MAIL: %q", reply)
	}
	var accepted, refused int
	for i := range n {
		reply := say(fmt.Sprintf("RCPT TO:<r%d@example.net>", i))
		switch {
		case i < limit && strings.HasPrefix(reply, "250"):
			accepted++
		case i >= limit && strings.HasPrefix(reply, "452 4.5.3"):
			refused++
		default:
			t.Fatalf("RCPT %d: %q", i, reply)
		}
	}
	say("DATA")
	if reply := say("Subject: many recipients\r\n\r\nhello\r\n."); !strings.HasPrefix(reply, "250 2.0.0") {
		t.Fatalf("end of data: %q", reply)
	}
	say("QUIT")
	t.Logf("%d recipients accepted, %d refused with 452 4.5.3", accepted, refused)

	d.waitQueueEmpty(t, 30*time.Second)
	delivered := map[string]int{}
	for _, m := range relay.Messages() {
		for _, to := range m.To {
			delivered[to]++
		}
	}
	if len(delivered) != limit {
		t.Errorf("relay got the message for %d recipients, want %d", len(delivered), limit)
	}
	for i := range limit {
		if rcpt := fmt.Sprintf("r%d@example.net", i); delivered[rcpt] != 1 {
			t.Errorf("%s received the message %d times, want once", rcpt, delivered[rcpt])
		}
	}
	stillServing(t, d, relay, 1)
}

// TestBadInputSendmail: `relayq sendmail` (symlink) with the named bad
// inputs → relayq (unix socket) → smtptest relay. Injection through -f, -F
// or an address is refused with EX_NOUSER (67) and a message that says
// why; the rest is accepted as sendmail's rules say: line endings become
// CRLF, a lone "." ends the input unless -i, a header alone or nothing at
// all is a message. Nothing refused reaches the queue or the maildrop.
func TestBadInputSendmail(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	long := strings.Repeat("abcdefghij", 1000)
	cases := []struct {
		name   string
		stdin  string
		args   []string // before the recipient, which the test adds
		code   int
		stderr string // what stderr says, for a refusal
		want   string // the body the relay receives; "" when refused
	}{
		{"CR LF in -F", "", []string{"-F", "Name\r\nBcc: evil@example.com"}, 67, "control character", ""},
		{"LF in -F", "", []string{"-F", "Name\nX-Injected: yes"}, 67, "control character", ""},
		{"CR in -f", "", []string{"-f", "a@example.org\rRCPT TO:<evil@example.com>"}, 67, "control character", ""},
		{"LF in -f", "", []string{"-f", "a@example.org\nX-Injected: yes"}, 67, "control character", ""},
		{"angle bracket in -f", "", []string{"-f", "a@example.org> SIZE=1"}, 67, "a@example.org> SIZE=1", ""},
		{"invalid UTF-8 in -f", "", []string{"-f", "\xff@example.org"}, 67, "utf-8", ""},
		{"bare LF", headerCRLF + "Subject: lf\n\nline 1\nline 2\n", []string{"-i"}, 0, "",
			headerCRLF + "Subject: lf\r\n\r\nline 1\r\nline 2\r\n"},
		{"bare CR", headerCRLF + "Subject: cr\r\rline 1\rline 2", []string{"-i"}, 0, "",
			headerCRLF + "Subject: cr\r\n\r\nline 1\r\nline 2\r\n"},
		{"LF dot LF ends the input", headerCRLF + "\nfirst\n.\nMAIL FROM:<evil@example.org>\n", nil, 0, "",
			headerCRLF + "\r\nfirst\r\n"},
		{"CRLF dot LF ends the input", headerCRLF + "\r\nfirst\r\n.\nMAIL FROM:<evil@example.org>\n", nil, 0, "",
			headerCRLF + "\r\nfirst\r\n"},
		{"LF dot LF with -i is text", headerCRLF + "\nfirst\n.\nsecond\n", []string{"-i"}, 0, "",
			headerCRLF + "\r\nfirst\r\n.\r\nsecond\r\n"},
		{"NUL octets", headerCRLF + "\nbad\x00byte\n", []string{"-i"}, 65, "NUL", ""},
		{"lines of 10,000 characters", headerCRLF + "\n" + long + "\n" + long + "\n", []string{"-i"}, 0, "",
			headerCRLF + "\r\n" + long + "\r\n" + long + "\r\n"},
		{"invalid UTF-8 in the body", headerCRLF + "Subject: caf\xe9\n\n\xc3\x28\xff\n", []string{"-i"}, 0, "",
			headerCRLF + "Subject: caf\xe9\r\n\r\n\xc3\x28\xff\r\n"},
		{"header only", headerCRLF + "Subject: only a header\n", []string{"-i"}, 0, "",
			headerCRLF + "Subject: only a header\r\n\r\n"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rcpt := fmt.Sprintf("case%d@example.net", i)
			res := runCmd(sendmailLink, []byte(tc.stdin), append(append([]string{"-c", d.config}, tc.args...), rcpt)...)
			if res.code != tc.code || !strings.Contains(res.stderr, tc.stderr) {
				t.Errorf("sendmail: %v; want exit %d, stderr with %q", res, tc.code, tc.stderr)
			}
		})
	}
	// An empty message: sendmail adds Date, Message-ID and From, and an
	// empty line; the message has no body.
	empty := runCmd(sendmailLink, nil, "-c", d.config, "-f", "empty@example.org", "empty@example.net")
	if empty.code != 0 {
		t.Errorf("sendmail with empty input: %v; want exit 0", empty)
	}

	d.waitQueueEmpty(t, 15*time.Second)
	msgs := relay.Messages()
	for i, tc := range cases {
		got := receivedBy(msgs, fmt.Sprintf("case%d@example.net", i))
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%s: refused, but the relay received %q", tc.name, got[0].Body)
		case tc.want == "":
		case len(got) != 1:
			t.Errorf("%s: the relay received %d messages, want 1", tc.name, len(got))
		case !sameMessage(got[0].Body, []byte(tc.want)):
			t.Errorf("%s: the relay received\n%q\nwant\n%q after relayq's Received", tc.name, got[0].Body, tc.want)
		}
	}
	if got := receivedBy(msgs, "empty@example.net"); len(got) != 1 {
		t.Errorf("empty input: the relay received %d messages, want 1", len(got))
	} else if b := string(got[0].Body); !strings.Contains(b, "\r\nDate: ") || !strings.Contains(b, "\r\nFrom: <empty@example.org>\r\n") ||
		!strings.HasSuffix(b, "\r\n\r\n") || strings.Count(b, "\r\n\r\n") != 1 {
		t.Errorf("empty input delivered as %q; want the added Date, Message-ID and From, an empty line and no body", b)
	}
	for _, m := range msgs {
		if slices.Contains(m.To, "evil@example.com") || bytes.Contains(m.Body, []byte("X-Injected")) {
			t.Errorf("injected recipient or header reached the relay: %q %q", m.To, m.Body)
		}
	}
	if files, _ := os.ReadDir(d.maildrop()); len(files) != 0 {
		t.Errorf("%d files left in the maildrop", len(files))
	}
	stillServing(t, d, relay, 1)
}
