package transport

import (
	"strconv"
	"strings"
	"testing"

	"relayq/transport/smtptest"
)

// TestSendTranscript: a Send over a new STARTTLS connection with AUTH
// reports the whole exchange (connect, greeting, EHLO, STARTTLS, TLS, AUTH
// redacted, MAIL, RCPT, DATA, the body as its size, the dot and every
// reply); the next Send on the pooled connection reports only its own
// transaction. Neither holds the password in any form, and neither needs
// Debug.
func TestSendTranscript(t *testing.T) {
	const user, pass = "relayq-user", "s3cret-Pa55word"
	srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{user: pass}})
	tr := newTransport(t, srv, credentials(user, pass))
	stuffed := strconv.Itoa(len(testBody) + 3) // three lines start with a dot
	transaction := []string{                   // MAIL, RCPT and DATA pipelined (pipeline.go)
		"C: MAIL FROM:<from@example.org>", "C: RCPT TO:<to@example.net>", "C: DATA", "S: 250 2.1.0 Ok", "S: 250 ",
		"S: 354 ", "C: <message body: " + stuffed + " bytes>", "C: .", "S: 250 2.0.0 Ok: queued as ",
	}

	first := mustSend(t, tr, message("from@example.org", "to@example.net")).Transcript
	lines := strings.Split(first, "\n")
	wantInOrder(t, lines, append([]string{
		"* connected to " + srv.Addr(), "S: 220 smtptest.localhost ESMTP", "C: EHLO " + localName, "S: 250-STARTTLS",
		"C: STARTTLS", "S: 220 2.0.0 Ready to start TLS", "* TLS established: TLS 1.3", "C: EHLO " + localName,
		"C: AUTH PLAIN <redacted>", "S: 235 2.7.0 Authentication successful",
	}, transaction...))
	checkNoSecret(t, first, pass, b64("\x00"+user+"\x00"+pass), strings.TrimRight(b64("\x00"+user+"\x00"+pass), "="))

	second := mustSend(t, tr, message("from@example.org", "to@example.net")).Transcript
	wantInOrder(t, strings.Split(second, "\n"), append([]string{"* reusing a pooled connection"}, transaction...))
	if strings.Contains(second, "EHLO") || strings.Contains(second, "AUTH") || strings.Count(second, "MAIL FROM") != 1 {
		t.Errorf("the pooled Send's transcript repeats the session or the first message:\n%s", second)
	}
	if t.Failed() {
		t.Logf("first transcript:\n%s\nsecond:\n%s", first, second)
	}
}

// TestFailedSendTranscript: a Send that fails reports the exchange up to
// the failure in its *Error: a refused password (AUTH, redacted, and the
// 535), and a refusal after the final dot (the body's size and the 554).
func TestFailedSendTranscript(t *testing.T) {
	t.Run("auth", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{TLS: true, Auth: map[string]string{"u": "right"}})
		tr := newTransport(t, srv, credentials("u", "wrong-Pa55"))
		_, err := send(t, tr, message("from@example.org", "to@example.net"))
		te := wantError(t, err, StageAuth, true)
		wantInOrder(t, strings.Split(te.Transcript, "\n"), []string{
			"* connected to", "S: 220 ", "C: STARTTLS", "* TLS established", "C: AUTH PLAIN <redacted>", "S: 535 5.7.8",
		})
		checkNoSecret(t, te.Transcript, "wrong-Pa55", b64("\x00u\x00wrong-Pa55"))
		if strings.Contains(te.Transcript, "MAIL") {
			t.Errorf("transcript goes on after the failed AUTH:\n%s", te.Transcript)
		}
	})
	t.Run("dot", func(t *testing.T) {
		srv := smtptest.NewServer(t, smtptest.Options{Script: smtptest.Script{Body: []smtptest.Step{smtptest.Reply(554, "5.6.0 Content rejected")}}})
		tr := newTransport(t, srv)
		_, err := send(t, tr, message("from@example.org", "to@example.net"))
		te := wantError(t, err, StageDot, false)
		wantInOrder(t, strings.Split(te.Transcript, "\n"), []string{
			"C: MAIL FROM:<from@example.org>", "C: DATA", "S: 354 ", "C: <message body: ", "C: .", "S: 554 5.6.0 Content rejected",
		})
	})
}

func checkNoSecret(t *testing.T, transcript string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(transcript, s) {
			t.Errorf("transcript holds the secret %q:\n%s", s, transcript)
		}
	}
}

// TestTranscriptBounded: a transcript stays within maxTranscript however
// much is said, keeps its first lines and its last ones (how the session
// ended) with a line saying how many were left out, cuts long lines with
// a mark, and starts afresh after take.
func TestTranscriptBounded(t *testing.T) {
	var tr transcript
	tr.addString(dirNote, "connected to 192.0.2.1:25")
	tr.add(dirServer, []byte(strings.Repeat("x", 3*maxTranscriptLine)))
	for i := range 2000 {
		tr.addString(dirClient, "RCPT TO:<rcpt"+strconv.Itoa(i)+"@example.org>")
	}
	tr.addString(dirServer, "421 4.4.2 closing")
	got := tr.take()
	if len(got) > maxTranscript+100 {
		t.Errorf("transcript is %d bytes, want about %d at most", len(got), maxTranscript)
	}
	lines := strings.Split(got, "\n")
	if lines[0] != "* connected to 192.0.2.1:25" || lines[len(lines)-1] != "S: 421 4.4.2 closing" ||
		lines[len(lines)-2] != "C: RCPT TO:<rcpt1999@example.org>" {
		t.Errorf("first/last lines %q … %q, want the connect and the 421", lines[0], lines[len(lines)-2:])
	}
	if want := "S: " + strings.Repeat("x", maxTranscriptLine) + " …(truncated)"; lines[1] != want {
		t.Errorf("long line kept as %.40q… (%d bytes), want it cut at %d with a mark", lines[1], len(lines[1]), maxTranscriptLine)
	}
	omitted := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "* … ") {
			n, _, _ := strings.Cut(strings.TrimPrefix(l, "* … "), " ")
			omitted, _ = strconv.Atoi(n)
		}
	}
	kept := strings.Count(got, "C: RCPT TO:")
	if omitted == 0 || kept+omitted != 2000 {
		t.Errorf("%d RCPT lines kept and %d said left out, want 2000 in all", kept, omitted)
	}
	tr.addString(dirClient, "NOOP")
	if again := tr.take(); again != "C: NOOP" {
		t.Errorf("after take, transcript %q, want only the new line", again)
	}
	if empty := tr.take(); empty != "" {
		t.Errorf("empty transcript taken as %q", empty)
	}
}

// TestLMTPTranscript: over LMTP on a Unix socket, the transcript names the
// socket and holds each recipient's reply after the dot.
func TestLMTPTranscript(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Options{LMTP: true, Unix: true, Script: smtptest.Script{
		LMTP: map[string][]smtptest.Step{"full@example.net": {smtptest.Reply(452, "4.2.2 mailbox full")}},
	}})
	tr := newTransport(t, srv, lmtp)
	res, err := send(t, tr, message("from@example.org", "ok@example.net", "full@example.net"))
	if err != nil {
		t.Fatal(err)
	}
	wantInOrder(t, strings.Split(res.Transcript, "\n"), []string{
		"* connected to " + srv.Addr(), "C: LHLO " + localName, "C: RCPT TO:<ok@example.net>", "C: RCPT TO:<full@example.net>",
		"C: <message body: ", "C: .", "S: 250 ", "S: 452 4.2.2 mailbox full",
	})
}
