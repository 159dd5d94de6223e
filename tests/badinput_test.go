package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestBadConfig: `relayq serve -c FILE` for each tests/testdata/badconfig/
// *.toml exits 78 (EX_CONFIG) and says what the .expected file holds: the
// line and the key at fault.
func TestBadConfig(t *testing.T) {
	files, err := filepath.Glob("testdata/badconfig/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs in testdata/badconfig (%v)", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, err := os.ReadFile(strings.TrimSuffix(file, ".toml") + ".expected")
			if err != nil {
				t.Fatal(err)
			}
			res := runCmdTimeout(15*time.Second, relayqBin, nil, "serve", "-c", file)
			if res.code != 78 {
				t.Errorf("relayq serve -c %s: %v; want exit 78", file, res)
			}
			if w := strings.TrimRight(string(want), "\n"); !strings.Contains(res.stderr, w) {
				t.Errorf("relayq serve -c %s said:\n%s\nwant it to contain %q", file, res.stderr, w)
			}
		})
	}
}

// TestBadSubmissionsSMTP: SMTP dialogs on relayq's unix socket and on its
// TCP listener that break a limit or send a bad address get the exact
// refusal, and nothing is queued.
func TestBadSubmissionsSMTP(t *testing.T) {
	port := freePort(t)
	d := startDaemon(t, nil, func(s settings) {
		s.set("submission", "listen", fmt.Sprintf(`["127.0.0.1:%d"]`, port))
		s.set("submission", "max_message_size", "2000")
		s.set("submission", "max_recipients", "3")
	})
	hello := []exchange{{"", "220"}, {"EHLO tests.localhost", "250"}}
	big := strings.Repeat(strings.Repeat("x", 70)+"\r\n", 50) + "." // 3600 bytes
	dialogs := []struct {
		name  string
		steps []exchange
	}{
		{"SIZE over the limit", []exchange{
			{"MAIL FROM:<a@example.org> SIZE=100000", "552 5.3.4"},
		}},
		{"message over the limit", []exchange{
			{"MAIL FROM:<a@example.org>", "250"},
			{"RCPT TO:<b@example.net>", "250"},
			{"DATA", "354"},
			{big, "552 5.3.4"},
		}},
		{"too many recipients", []exchange{
			{"MAIL FROM:<a@example.org>", "250"},
			{"RCPT TO:<b1@example.net>", "250"},
			{"RCPT TO:<b2@example.net>", "250"},
			{"RCPT TO:<b3@example.net>", "250"},
			{"RCPT TO:<b4@example.net>", "452 4.5.3"},
		}},
		{"bad recipient", []exchange{
			{"MAIL FROM:<a@example.org>", "250"},
			{"RCPT TO:<not an address>", "501"},
			{"RCPT TO:<two@at@example.net>", "501"},
		}},
		{"bad sender", []exchange{
			{"MAIL FROM:<bad sender@example.org>", "501"},
		}},
	}
	for _, listener := range []struct{ network, addr string }{
		{"unix", d.submitSocket()},
		{"tcp", fmt.Sprintf("127.0.0.1:%d", port)},
	} {
		for _, dl := range dialogs {
			t.Run(listener.network+"/"+dl.name, func(t *testing.T) {
				steps := append(append([]exchange{}, hello...), dl.steps...)
				steps = append(steps, exchange{"QUIT", "221"})
				dialog(t, listener.network, listener.addr, steps)
			})
		}
	}
	if q := d.queueList(t); len(q) != 0 {
		t.Errorf("refused submissions left %d messages in the queue: %+v", len(q), q)
	}
}

// TestBadSubmissionsSendmail: `relayq sendmail` refuses bad input with the
// sysexits status a mail program expects, and queues nothing (the daemon
// is running, so anything accepted would show in the queue).
func TestBadSubmissionsSendmail(t *testing.T) {
	d := startDaemon(t, nil)
	good := newMessage(10, "a@example.org", []string{"b@example.net"}, 2)
	for _, tc := range []struct {
		name string
		msg  []byte
		args []string
		want int
	}{
		{"CR LF in a recipient", good, []string{"-i", "b@example.net\r\nRCPT TO:<evil@example.com>"}, 67},
		{"LF in a recipient", good, []string{"-i", "b@example.net\nX-Evil: yes"}, 67},
		{"CR LF in -f", good, []string{"-i", "-f", "a@example.org\r\nRCPT TO:<evil@example.com>", "b@example.net"}, 67},
		{"no recipients", good, []string{"-i"}, 64},
		{"NUL in the message", append(append([]byte{}, good...), "bad\x00byte\r\n"...), []string{"-i", "b@example.net"}, 65},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := d.sendmail(tc.msg, tc.args...)
			if res.code != tc.want {
				t.Errorf("sendmail %q: %v; want exit %d", tc.args, res, tc.want)
			}
			if res.stderr == "" {
				t.Error("sendmail failed without saying why")
			}
		})
	}
	if q := d.queueList(t); len(q) != 0 {
		t.Errorf("refused submissions left %d messages in the queue: %+v", len(q), q)
	}
	if files, _ := os.ReadDir(d.maildrop()); len(files) != 0 {
		t.Errorf("refused submissions left %d files in the maildrop", len(files))
	}
}

// TestNoSmuggling: a client on relayq's unix socket hides a second
// transaction behind bare-LF and bare-CR "end of data" sequences (SMTP
// smuggling) → relayq → smtptest relay. The relay gets one message, to the
// real recipient only, with no bare CR or LF left in it.
func TestNoSmuggling(t *testing.T) {
	for _, tc := range []struct{ name, eod string }{
		{"bare LF", "\n.\n"},
		{"bare CR", "\r.\r"},
		{"LF then CRLF", "\n.\r\n"},
		{"CRLF then LF", "\r\n.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := smtptest.NewServer(t, smtptest.Options{})
			d := startDaemon(t, relay)
			smuggled := "Subject: hello\r\n\r\nfirst message" + tc.eod +
				"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n."
			dialog(t, "unix", d.submitSocket(), []exchange{
				{"", "220"},
				{"EHLO tests.localhost", "250"},
				{"MAIL FROM:<honest@example.org>", "250"},
				{"RCPT TO:<rcpt@example.net>", "250"},
				{"DATA", "354"},
				{smuggled, "250"},
				{"QUIT", "221"},
			})
			relay.WaitMessages(t, 1, 15*time.Second)
			d.waitQueueEmpty(t, 10*time.Second)
			msgs := relay.Messages()
			if len(msgs) != 1 {
				t.Fatalf("relay received %d messages, want 1: %+v", len(msgs), msgs)
			}
			m := msgs[0]
			if m.From != "honest@example.org" || len(m.To) != 1 || m.To[0] != "rcpt@example.net" {
				t.Errorf("envelope %s → %q, want honest@example.org → [rcpt@example.net]", m.From, m.To)
			}
			if bytes.Contains(bytes.ReplaceAll(m.Body, []byte("\r\n"), nil), []byte("\n")) ||
				bytes.Contains(bytes.ReplaceAll(m.Body, []byte("\r\n"), nil), []byte("\r")) {
				t.Errorf("body keeps a bare CR or LF: %q", m.Body)
			}
		})
	}
}
