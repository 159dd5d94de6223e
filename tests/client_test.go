package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// cmdResult is how a relayq command ended.
type cmdResult struct {
	code           int // exit status; -1 if it could not run or timed out
	stdout, stderr string
}

func (r cmdResult) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// runCmd runs bin with args and stdin, for at most a minute.
func runCmd(bin string, stdin []byte, args ...string) cmdResult {
	return runCmdTimeout(time.Minute, bin, stdin, args...)
}

// runCmdTimeout runs bin with args and stdin; after timeout it is killed
// and the result has code -1.
func runCmdTimeout(timeout time.Duration, bin string, stdin []byte, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = testEnv()
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return cmdResult{code: exitCode(err), stdout: stdout.String(), stderr: stderr.String()}
}

// sendmail runs `sendmail -c CONFIG args…` with msg on stdin, by the name
// the package installs (relayq-sendmail, through the sendmail symlink).
func (d *daemon) sendmail(msg []byte, args ...string) cmdResult {
	return runCmd(sendmailLink, msg, append([]string{"-c", d.config}, args...)...)
}

var queuedAs = regexp.MustCompile(`queued as (\S+)`)

// helloSMTP dials network/addr (relayq's Unix socket or a TCP listener),
// gives the connection the deadline within, and says EHLO as a test
// client: what every SMTP submission of these tests begins with. The
// caller closes the client. It touches no testing.TB.
func helloSMTP(network, addr string, within time.Duration) (*smtp.Client, error) {
	nc, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(within))
	c := smtp.NewClient(nc)
	if err := c.Hello("tests.localhost"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	return c, nil
}

// envelopeSMTP is helloSMTP followed by MAIL FROM and every RCPT TO: a
// client ready for DATA (or for what a test does before it). The caller
// closes it.
func envelopeSMTP(network, addr string, within time.Duration, from string, to []string) (*smtp.Client, error) {
	c, err := helloSMTP(network, addr, within)
	if err != nil {
		return nil, err
	}
	if err := c.Mail(from, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("MAIL: %w", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			c.Close()
			return nil, fmt.Errorf("RCPT: %w", err)
		}
	}
	return c, nil
}

// submitSMTP sends one message over SMTP to network/addr (relayq's Unix
// socket or a TCP listener) and returns the queue ID of the 250 reply. It
// never touches a testing.TB, so goroutines may call it.
func submitSMTP(network, addr, from string, to []string, body []byte) (string, error) {
	c, err := helloSMTP(network, addr, time.Minute)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Mail(from, nil); err != nil {
		return "", fmt.Errorf("MAIL: %w", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return "", fmt.Errorf("RCPT %s: %w", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return "", fmt.Errorf("DATA body: %w", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", fmt.Errorf("end of DATA: %w", err)
	}
	m := queuedAs.FindStringSubmatch(resp.StatusText)
	if m == nil {
		return "", fmt.Errorf("250 reply %q names no queue ID", resp.StatusText)
	}
	_ = c.Quit()
	return m[1], nil
}

// submit sends one message over the daemon's Unix socket, failing the test
// on error. Call it from the test's goroutine.
func (d *daemon) submit(t testing.TB, from string, to []string, body []byte) string {
	t.Helper()
	id, err := submitSMTP("unix", d.submitSocket(), from, to, body)
	if err != nil {
		t.Fatalf("submit over %s: %v", d.submitSocket(), err)
	}
	return id
}

// exchange is one step of an SMTP dialog: a line to send ("" sends nothing:
// the greeting) and the prefix the first line of the reply must have.
type exchange struct {
	send   string
	expect string
}

// dialog plays steps against relayq's listener at network/addr.
func dialog(t testing.TB, network, addr string, steps []exchange) {
	t.Helper()
	nc, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(nc)
	for _, st := range steps {
		if st.send != "" {
			if _, err := nc.Write([]byte(st.send + "\r\n")); err != nil {
				t.Fatalf("send %q: %v", shorten(st.send), err)
			}
		}
		reply, err := readReply(r)
		if err != nil {
			t.Fatalf("after %q: reading the reply: %v", shorten(st.send), err)
		}
		if !strings.HasPrefix(reply, st.expect) {
			t.Errorf("after %q: got %q, want %q…", shorten(st.send), reply, st.expect)
		}
	}
}

// readReply reads a (possibly multi-line) SMTP reply and returns its first
// line.
func readReply(r *bufio.Reader) (string, error) {
	var first string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return first, err
		}
		line = strings.TrimRight(line, "\r\n")
		if first == "" {
			first = line
		}
		if len(line) < 4 || line[3] != '-' {
			return first, nil
		}
	}
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// listed is one message in `relayq queue list --json` or `dead list --json`.
type listed struct {
	ID          string       `json:"id"`
	State       string       `json:"state"`  // queue list: queued, …, damaged
	Reason      string       `json:"reason"` // dead list: corrupt or damaged, when no reply killed it
	From        string       `json:"from"`
	Recipients  []listedRcpt `json:"recipients"`
	Attempts    int          `json:"attempts"`
	NextAttempt *time.Time   `json:"next_attempt"`
	Created     time.Time    `json:"created"`
	Died        *time.Time   `json:"died"`
	Size        int64        `json:"size"`
	Submitter   struct {
		UID int    `json:"uid"`
		Via string `json:"via"`
	} `json:"submitter"`
}

type listedRcpt struct {
	Address     string     `json:"address"`
	Status      string     `json:"status"`
	Attempts    int        `json:"attempts"`
	NextAttempt *time.Time `json:"next_attempt"`
	Reply       *reply     `json:"last_reply"`
	// From Reply, for the tests' convenience: the reply on one line
	// ("550 5.1.1 text"), its code and enhanced code.
	LastReply string `json:"-"`
	ReplyCode int    `json:"-"`
	Enhanced  string `json:"-"`
}

// reply is a reply in every --json output: {code, enhanced, lines}.
type reply struct {
	Code     int      `json:"code"`
	Enhanced string   `json:"enhanced"`
	Lines    []string `json:"lines"`
}

// String is the reply on one line: "550 5.1.1 text", or the text alone
// for a local failure (code 0).
func (r *reply) String() string {
	if r == nil {
		return ""
	}
	words := []string{}
	if r.Code != 0 {
		words = append(words, strconv.Itoa(r.Code))
	}
	if r.Enhanced != "" {
		words = append(words, r.Enhanced)
	}
	return strings.Join(append(words, r.Lines...), " ")
}

func (r *listedRcpt) UnmarshalJSON(data []byte) error {
	type plain listedRcpt
	if err := json.Unmarshal(data, (*plain)(r)); err != nil {
		return err
	}
	if r.Reply != nil {
		r.LastReply, r.ReplyCode, r.Enhanced = r.Reply.String(), r.Reply.Code, r.Reply.Enhanced
	}
	return nil
}

// list runs `relayq KIND list --json` (KIND is queue or dead).
func (d *daemon) list(kind string) ([]listed, cmdResult, error) {
	res := runCmd(relayqBin, nil, kind, "list", "--json", "-c", d.config)
	if res.code != 0 {
		return nil, res, fmt.Errorf("relayq %s list: %v", kind, res)
	}
	var out []listed
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		return nil, res, fmt.Errorf("relayq %s list --json: %v in %q", kind, err, res.stdout)
	}
	return out, res, nil
}

func (d *daemon) queueList(t testing.TB) []listed {
	t.Helper()
	l, _, err := d.list("queue")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (d *daemon) deadList(t testing.TB) []listed {
	t.Helper()
	l, _, err := d.list("dead")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitQueueEmpty waits until `queue list` shows nothing: nothing is left to
// deliver or retry.
func (d *daemon) waitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "an empty queue", func() bool { return len(d.queueList(t)) == 0 })
}

// logRecords parses the daemon's log lines (slog text) whose msg is msg.
func (d *daemon) logRecords(msg string) []map[string]string {
	var out []map[string]string
	for line := range strings.Lines(d.log.String()) {
		rec := parseLogfmt(strings.TrimSpace(line))
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// deliveryLog is the "delivery" log lines (one per attempt per recipient)
// for queue ID id, in order.
func (d *daemon) deliveryLog(id string) []map[string]string {
	var out []map[string]string
	for _, rec := range d.logRecords("delivery") {
		if rec["id"] == id {
			out = append(out, rec)
		}
	}
	return out
}

// parseLogfmt splits a slog text line into its keys and values, unquoting
// quoted values.
func parseLogfmt(line string) map[string]string {
	rec := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		key, rest, ok := strings.Cut(line, "=")
		if !ok || strings.Contains(key, " ") {
			return rec
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return rec
			}
			value, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			value, rest, _ = strings.Cut(rest, " ")
		}
		rec[key] = value
		line = rest
	}
	return rec
}

// newMessage builds a message the way a careful mail program would write
// it: CRLF line endings and the Date, Message-ID and From fields sendmail
// would otherwise add, so that what the relay receives must equal it byte
// for byte. X-Seq identifies it; lines sets the body's length, and one body
// line starts with a dot (dot-stuffing on every hop).
func newMessage(seq int, from string, to []string, lines int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.%d@tests.relayq.example>\r\n", seq, time.Now().UnixNano())
	fmt.Fprintf(&b, "From: <%s>\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: relayq end-to-end test %d\r\n", seq)
	fmt.Fprintf(&b, "X-Seq: %d\r\n", seq)
	b.WriteString("\r\n")
	for i := range lines {
		fmt.Fprintf(&b, "line %d of message %d %s\r\n", i, seq, strings.Repeat("x", (seq*7+i*13)%70))
		if i == lines/2 {
			b.WriteString(".a line starting with a dot\r\n")
		}
	}
	return b.Bytes()
}

var seqHeader = regexp.MustCompile(`(?m)^X-Seq: (\d+)\r?$`)

// seqOf returns the X-Seq of a message, or -1.
func seqOf(body []byte) int {
	m := seqHeader.FindSubmatch(body)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
