package transport

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"

	"relayq/transport/smtptest"
)

// logCapture is a JSON slog destination a test can read back.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// conversation returns the logged conversation lines as "C: …" / "S: …",
// failing the test on a record without a connection id.
func (l *logCapture) conversation(t *testing.T) []string {
	t.Helper()
	var lines []string
	for _, raw := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var rec struct {
			Msg  string
			Conn *uint64
			Dir  string
			Line string
		}
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		if rec.Msg != "relay conversation" {
			continue
		}
		if rec.Conn == nil || (rec.Dir != "C" && rec.Dir != "S") {
			t.Errorf("conversation record without conn id or direction: %s", raw)
		}
		lines = append(lines, rec.Dir+": "+rec.Line)
	}
	return lines
}

// debugLogger logs everything, as JSON, to a logCapture.
func debugLogger() (*slog.Logger, *logCapture) {
	c := &logCapture{}
	return slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})), c
}

// TestDebugRedactsAuth sends one message with Debug on, over STARTTLS and
// over implicit TLS, with PLAIN and with LOGIN, and checks the logged
// conversation: commands and replies are there, with the connection id and
// direction, as the decrypted text (never TLS records); no form of the
// password, nor the base64 of the SASL responses, appears anywhere in the
// log; the body is logged as its size only.
func TestDebugRedactsAuth(t *testing.T) {
	const user, pass = "relayq-user", "s3cret-Pa55word"
	secrets := map[string]string{
		"password":                pass,
		"PLAIN response":          b64("\x00" + user + "\x00" + pass),
		"PLAIN response with id":  b64(user + "\x00" + user + "\x00" + pass),
		"LOGIN user name":         b64(user),
		"LOGIN password":          b64(pass),
		"body text":               "leading dot",
		"password base64 no pad":  strings.TrimRight(b64(pass), "="),
		"PLAIN response, no pad ": strings.TrimRight(b64("\x00"+user+"\x00"+pass), "="),
	}
	for _, tc := range []struct {
		name     string
		mech     string
		implicit bool
		want     []string // in this order, among the conversation lines
	}{
		{"PLAIN STARTTLS", "PLAIN", false, []string{
			"S: 220 smtptest.localhost ESMTP smtptest", "C: EHLO " + localName, "S: 250-STARTTLS", "C: STARTTLS",
			"S: 220 2.0.0 Ready to start TLS", "C: EHLO " + localName, "S: 250 AUTH PLAIN LOGIN",
			"C: AUTH PLAIN <redacted>", "S: 235 2.7.0 Authentication successful",
		}},
		{"LOGIN STARTTLS", "LOGIN", false, []string{
			"C: STARTTLS", "C: EHLO " + localName, "C: AUTH LOGIN", "S: 334 " + b64("Username:"), "C: <redacted>",
			"S: 334 " + b64("Password:"), "C: <redacted>", "S: 235 2.7.0 Authentication successful",
		}},
		{"PLAIN implicit TLS", "PLAIN", true, []string{
			"S: 220 smtptest.localhost ESMTP smtptest", "C: EHLO " + localName, "C: AUTH PLAIN <redacted>",
			"S: 235 2.7.0 Authentication successful",
		}},
		{"LOGIN implicit TLS", "LOGIN", true, []string{"C: AUTH LOGIN", "C: <redacted>", "C: <redacted>", "S: 235 2.7.0 Authentication successful"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, smtptest.Options{TLS: !tc.implicit, ImplicitTLS: tc.implicit, Auth: map[string]string{user: pass}})
			log, capture := debugLogger()
			tr := newTransport(t, srv, credentials(user, pass), func(o *Options) {
				o.Secure, o.Debug, o.Logger, o.Auth.Mechanism = tc.implicit, true, log, tc.mech
			})
			mustSend(t, tr, message("from@example.org", "to@example.net"))
			tr.Close()

			conv := capture.conversation(t)
			stuffed := len(testBody) + 3 // three lines start with a dot
			// MAIL, RCPT and DATA are pipelined (pipeline.go).
			want := append(tc.want, "C: MAIL FROM:<from@example.org>", "C: RCPT TO:<to@example.net>", "C: DATA",
				"S: 250 2.1.0 Ok", "S: 250 ", "S: 354 ",
				"C: <message body: "+strconv.Itoa(stuffed)+" bytes>", "C: .", "S: 250 2.0.0 Ok: queued as ", "C: QUIT", "S: 221 2.0.0 Bye")
			wantInOrder(t, conv, want)
			for _, l := range conv {
				if strings.ContainsFunc(l, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
					t.Errorf("logged line %q is not text: TLS records reached the log?", l)
				}
			}
			all := capture.String()
			for what, s := range secrets {
				if strings.Contains(all, s) {
					t.Errorf("the log holds the %s %q", what, s)
				}
			}
			if t.Failed() {
				t.Logf("conversation:\n%s", strings.Join(conv, "\n"))
			}
		})
	}
}

// wantInOrder checks that each of want is the prefix of a line of got,
// in order.
func wantInOrder(t *testing.T, got, want []string) {
	t.Helper()
	i := 0
	for _, l := range got {
		if i < len(want) && strings.HasPrefix(l, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("logged conversation lacks %q (after %q)", want[i], want[:i])
	}
}

// TestDebugOff: without Debug, nothing of the conversation is logged, even
// at debug level.
func TestDebugOff(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{})
	log, capture := debugLogger()
	tr := newTransport(t, srv, func(o *Options) { o.Logger = log })
	mustSend(t, tr, message("from@example.org", "to@example.net"))
	tr.Close()
	if conv := capture.conversation(t); len(conv) > 0 || strings.Contains(capture.String(), "MAIL FROM") {
		t.Errorf("conversation logged without Debug: %q", conv)
	}
}

// TestDebugAuthFailure: a refused password is not logged either, and the
// relay's refusal is.
func TestDebugAuthFailure(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{"u": "right"}})
	log, capture := debugLogger()
	tr := newTransport(t, srv, credentials("u", "wrong-password"), func(o *Options) { o.Debug, o.Logger = true, log })
	if _, err := send(t, tr, message("from@example.org", "to@example.net")); err == nil {
		t.Fatal("Send succeeded with a wrong password")
	}
	tr.Close()
	wantInOrder(t, capture.conversation(t), []string{"C: AUTH PLAIN <redacted>", "S: 535 5.7.8 Authentication credentials invalid"})
	if strings.Contains(capture.String(), "wrong-password") || strings.Contains(capture.String(), b64("\x00u\x00wrong-password")) {
		t.Error("the log holds the password")
	}
}

// TestLineBuffer splits input fed in every possible two-piece split.
func TestLineBuffer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"250-a\r\n250 b\r\n", []string{"250-a", "250 b"}},
		{"bare\nlf\n", []string{"bare", "lf"}},
		{"partial", nil},
		{strings.Repeat("x", maxLoggedLine+10) + "\r\nok\r\n", []string{strings.Repeat("x", maxLoggedLine) + " …(truncated)", "ok"}},
	} {
		for cut := 0; cut <= len(tc.in); cut += max(1, len(tc.in)/50) {
			var lb lineBuffer
			var got []string
			emit := func(b []byte) { got = append(got, string(b)) }
			lb.feed([]byte(tc.in[:cut]), emit)
			lb.feed([]byte(tc.in[cut:]), emit)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("%.20q cut at %d: got %q, want %q", tc.in, cut, got, tc.want)
			}
		}
	}
}

// TestBodyCounter finds the end of dot-stuffed bodies fed in two pieces,
// cut anywhere, and leaves what follows to the command parser.
func TestBodyCounter(t *testing.T) {
	for _, tc := range []struct {
		body string // as sent, final dot line included
		size int64
	}{
		{".\r\n", 0},
		{"a\r\n.\r\n", 3},
		{"..\r\n.x\r\n.\r\n", 8},
		{"x.\r\n\r\n.\r\n", 6},
		{".\rx\r\n.\r\r\n.\r\n", 9},
		{"a longer line of text\r\n.\r\n", 23},
	} {
		in := tc.body + "QUIT\r\n"
		for cut := 0; cut <= len(in); cut++ {
			var bc bodyCounter
			n, done := bc.feed([]byte(in[:cut]))
			used := n
			if !done {
				n, done = bc.feed([]byte(in[cut:]))
				used += n
			}
			if !done || bc.size != tc.size || used != len(tc.body) {
				t.Errorf("%q cut at %d: done %v size %d used %d, want size %d used %d", tc.body, cut, done, bc.size, used, tc.size, len(tc.body))
			}
		}
	}
}
