package tests

// Interop with real programs (issue 5): the mail clients people point at
// relayq (swaks, msmtp, mailx, a cron job's `sendmail -t -oi`) and Postfix's
// smtp-sink as a relay for volume. Postfix itself and Dovecot as relay and
// LMTP server are in peers_test.go.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// needTool returns the path of program (from Debian package pkg), skipping
// the test when it is missing, or failing it under tests/run.sh, which
// installs it.
func needTool(t *testing.T, program, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil {
		return path
	}
	if os.Getenv(realPeersEnv) != "" {
		t.Fatalf("%s is not installed under %s=1 (tests/run.sh installs %s)", program, realPeersEnv, pkg)
	}
	t.Skipf("%s is not installed; tests/run.sh installs %s", program, pkg)
	return ""
}

// splitMessage cuts a message at its first empty line into header and body.
func splitMessage(t *testing.T, msg []byte) (header, body []byte) {
	t.Helper()
	header, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("message without a header/body separator: %q", msg)
	}
	return header, body
}

// wantSameMessage checks that the relay got sent's body byte for byte and
// every header line of sent; the client may add header fields of its own.
func wantSameMessage(t *testing.T, who string, got, sent []byte) {
	t.Helper()
	gotHeader, gotBody := splitMessage(t, got)
	sentHeader, sentBody := splitMessage(t, sent)
	if !bytes.Equal(gotBody, sentBody) {
		i := 0
		for i < min(len(gotBody), len(sentBody)) && gotBody[i] == sentBody[i] {
			i++
		}
		t.Errorf("%s: body changed on the way at byte %d:\n got …%q\nwant …%q", who, i, gotBody[max(0, i-20):], sentBody[max(0, i-20):])
	}
	for _, line := range strings.Split(string(sentHeader), "\r\n") {
		if !bytes.Contains(gotHeader, []byte(line+"\r\n")) && !bytes.HasSuffix(gotHeader, []byte(line)) {
			t.Errorf("%s: header line %q missing from %q", who, line, gotHeader)
		}
	}
}

// TestInteropSwaksMsmtp: swaks and msmtp → relayq, each over the TCP
// listener on 127.0.0.1 and over the Unix socket → smtptest relay. Each
// message arrives byte for byte with its envelope.
func TestInteropSwaksMsmtp(t *testing.T) {
	swaks := needTool(t, "swaks", "swaks")
	msmtp := needTool(t, "msmtp", "msmtp")
	relay := smtptest.NewServer(t, smtptest.Options{})
	port := freePort(t)
	d := startDaemon(t, relay, func(s settings) {
		s.set("submission", "listen", fmt.Sprintf(`["127.0.0.1:%d"]`, port))
	})
	msmtprc := filepath.Join(d.dir, "msmtprc")
	if err := os.WriteFile(msmtprc, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const from = "client@example.org"
	// swaks puts CRLF . CRLF after the data it is given, so it is given the
	// message without its last line break.
	tests := []struct {
		name string
		args func(to string) (bin string, args []string)
	}{
		{"swaks tcp", func(to string) (string, []string) {
			return swaks, []string{"--server", "127.0.0.1", "--port", strconv.Itoa(port), "--from", from, "--to", to, "--data", "-"}
		}},
		{"swaks socket", func(to string) (string, []string) {
			return swaks, []string{"--socket", d.submitSocket(), "--from", from, "--to", to, "--data", "-"}
		}},
		{"msmtp tcp", func(to string) (string, []string) {
			return msmtp, []string{"-C", msmtprc, "--host=127.0.0.1", "--port=" + strconv.Itoa(port), "--auth=off", "--tls=off", "--from=" + from, to}
		}},
		{"msmtp socket", func(to string) (string, []string) {
			return msmtp, []string{"-C", msmtprc, "--host=localhost", "--socket=" + d.submitSocket(), "--auth=off", "--tls=off", "--from=" + from, to}
		}},
	}
	for i, tt := range tests {
		to := fmt.Sprintf("rcpt%d@example.net", i)
		msg := newMessage(100+i, from, []string{to}, 20)
		bin, args := tt.args(to)
		stdin := msg
		if strings.HasPrefix(tt.name, "swaks") {
			stdin = bytes.TrimSuffix(msg, []byte("\r\n"))
		}
		if r := runCmd(bin, stdin, args...); r.code != 0 {
			t.Fatalf("%s: %v", tt.name, r)
		}
		got := relay.WaitMessages(t, i+1, 15*time.Second)[i]
		if got.From != from || len(got.To) != 1 || got.To[0] != to {
			t.Errorf("%s: envelope %s → %q, want %s → %s", tt.name, got.From, got.To, from, to)
		}
		wantSameMessage(t, tt.name, got.Body, msg)
	}
}

// TestInteropMailx: the mail(1) command (bsd-mailx), whose sendmail is the
// relayq symlink named sendmail (mailx runs `sendmail -i -t`; its path is
// set in $MAILRC, mailx's own setting) → relayq's socket → smtptest relay.
// The relay gets the Subject and the body as typed.
func TestInteropMailx(t *testing.T) {
	mailx := needTool(t, "mail", "bsd-mailx")
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	rc := filepath.Join(d.dir, "mailrc")
	writeFile(t, rc, "set sendmail="+sendmailLink+"\n")
	cmd := exec.Command(mailx, "-s", "disk almost full", "ops@example.net")
	cmd.Env = append(testEnv(), "MAILRC="+rc, "RELAYQ_CONFIG="+d.config)
	cmd.Stdin = strings.NewReader("/var is 91% full\n.not the end\nbye\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mail: %v\n%s", err, out)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)[0]
	if len(got.To) != 1 || got.To[0] != "ops@example.net" {
		t.Errorf("envelope recipients %q, want ops@example.net", got.To)
	}
	header, body := splitMessage(t, got.Body)
	if !bytes.Contains(header, []byte("Subject: disk almost full\r\n")) {
		t.Errorf("header %q lacks the Subject", header)
	}
	if want := "/var is 91% full\r\n.not the end\r\nbye\r\n"; string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}
}

// TestInteropCronSendmail: what cron does with a job's output — `sendmail
// -t -oi` found first in $PATH (the relayq symlink) with the headers on
// standard input → relayq's socket → smtptest relay. The recipient comes
// from To:, a lone "." line is content (-oi), and the body arrives byte for
// byte. cron's From without a domain leaves qualified with [rewrite]
// domain, keeping its name (relays reject "root").
func TestInteropCronSendmail(t *testing.T) {
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay, func(s settings) { s.set("rewrite", "domain", `"example.net"`) })
	msg := "From: root (Cron Daemon)\r\n" +
		"To: ops@example.net\r\n" +
		"Subject: Cron <root@host> /usr/local/bin/backup\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=UTF-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"X-Cron-Env: <SHELL=/bin/sh>\r\n" +
		"\r\n" +
		"backup: 3 files copied\r\n.\r\nbackup: done\r\n"
	cmd := exec.Command("/bin/sh", "-c", "sendmail -t -oi")
	cmd.Env = append(testEnv(), "PATH="+filepath.Dir(sendmailLink)+":"+os.Getenv("PATH"), "RELAYQ_CONFIG="+d.config)
	cmd.Stdin = strings.NewReader(strings.ReplaceAll(msg, "\r\n", "\n")) // cron writes LF
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh -c 'sendmail -t -oi': %v\n%s", err, out)
	}
	got := relay.WaitMessages(t, 1, 15*time.Second)[0]
	if len(got.To) != 1 || got.To[0] != "ops@example.net" {
		t.Errorf("envelope recipients %q, want ops@example.net (from To:)", got.To)
	}
	sent := strings.Replace(msg, "From: root (Cron Daemon)", `From: "Cron Daemon" <root@example.net>`, 1)
	wantSameMessage(t, "cron", got.Body, []byte(sent))
}

// TestInteropSmtpSink: SMTP on relayq's socket (16 concurrent clients,
// 2,000 messages) → relayq → Postfix's smtp-sink on 127.0.0.1, which dumps
// each transaction to a file. Every message arrives: 2,000 files, each X-Seq
// once, and smtp-sink's own counter says 2,000.
func TestInteropSmtpSink(t *testing.T) {
	const total, clients = 2000, 16
	sinkBin := needTool(t, "smtp-sink", "postfix")
	dir := peerDir(t)
	dump := filepath.Join(dir, "dump")
	if err := os.Mkdir(dump, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dump, 0o777); err != nil { // smtp-sink writes as postfix
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"-c", "-d", dump + "/", addr, "256"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "postfix"}, args...)
	}
	sink := startProc(t, exec.Command(sinkBin, args...))
	t.Cleanup(func() {
		if !sink.exited() {
			sink.cmd.Process.Signal(syscall.SIGTERM)
			sink.waitExit(t, 10*time.Second)
		}
	})
	waitFor(t, 10*time.Second, "smtp-sink to greet", func() bool {
		if sink.exited() {
			t.Fatalf("smtp-sink exited: %s", sink.out)
		}
		return greets("tcp", addr)
	})
	d := startDaemon(t, nil, func(s settings) {
		s.set("relay", "url", tomlString("smtp://"+addr))
		s.set("relay", "max_connections", "8")
		s.set("delivery", "workers", "16")
	})

	start := time.Now()
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := c; seq < total; seq += clients {
				from, to := "bulk@example.org", []string{fmt.Sprintf("sink%d@example.net", seq)}
				if _, err := submitSMTP("unix", d.submitSocket(), from, to, newMessage(seq, from, to, 5)); err != nil {
					errs <- fmt.Errorf("message %d: %w", seq, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	submitted := time.Since(start)
	d.waitQueueEmpty(t, 60*time.Second)
	delivered := time.Since(start)

	files, err := os.ReadDir(dump)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int]int)
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dump, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		seen[seqOf(data)]++
	}
	var missing, twice []int
	for seq := range total {
		switch seen[seq] {
		case 0:
			missing = append(missing, seq)
		case 1:
		default:
			twice = append(twice, seq)
		}
	}
	if len(files) != total || len(missing) > 0 || len(twice) > 0 {
		t.Errorf("smtp-sink dumped %d messages, want %d; missing %v, more than once %v", len(files), total, missing, twice)
	}
	if len(d.deadList(t)) != 0 {
		t.Errorf("dead letters after delivering to smtp-sink")
	}
	sink.cmd.Process.Signal(syscall.SIGTERM)
	sink.waitExit(t, 10*time.Second)
	counts := strings.Split(strings.TrimSpace(sink.out.String()), "\r")
	if last := counts[len(counts)-1]; !strings.Contains(last, fmt.Sprintf("mesg=%d", total)) {
		t.Errorf("smtp-sink's counter ends at %q, want mesg=%d", last, total)
	}
	t.Logf("smtp-sink: %d messages submitted in %v, all delivered after %v (lost=%d duplicates=%d)",
		total, submitted.Round(time.Millisecond), delivered.Round(time.Millisecond), len(missing), len(twice))
}
