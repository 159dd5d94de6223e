package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"relayq/transport/smtptest"
)

// eximRoot is where tests/run.sh unpacks Debian's exim4-daemon-light
// (dpkg -x, never installed: the package conflicts with postfix, which
// the other peer tests use).
const eximRoot = "/var/cache/relayq-test-exim/root"

// eximDomain is the domain the test's exim delivers; everything else it
// refuses to relay.
const eximDomain = "exim.test"

// eximOptions say how strict a test's exim is.
type eximOptions struct {
	noPipelining bool // PIPELINING not advertised: exim refuses a client that pipelines anyway
	noChunking   bool // CHUNKING (BDAT) not advertised
}

// exim is a private exim daemon: its own configuration, spool, log and
// Maildir, on a loopback port.
type exim struct {
	Addr string
	dir  string
	proc *peerProc
}

// eximUsers are the AUTH logins the test's exim accepts (PLAIN and LOGIN,
// only over TLS).
var eximUsers = map[string]string{"relayq": "s3cret-exim"}

// requireExim returns the exim binary, or skips the test (fails it under
// tests/run.sh, which unpacks it) when it is missing or cannot run: it
// runs in a mount namespace of its own, which needs root.
func requireExim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(eximRoot, "usr/sbin/exim4")
	why := ""
	if _, err := os.Stat(bin); err != nil {
		why = "exim4-daemon-light is not unpacked in " + eximRoot
	} else if os.Geteuid() != 0 {
		why = "exim runs in a mount namespace of its own (its user exists only there): needs root"
	}
	if why == "" {
		return bin
	}
	if os.Getenv(realPeersEnv) != "" {
		t.Fatalf("exim unavailable under %s=1 (tests/run.sh unpacks it): %s", realPeersEnv, why)
	}
	t.Skipf("exim unavailable (%s); tests/run.sh unpacks it", why)
	return ""
}

// startExim starts exim in the foreground on a free loopback port.
// Debian's build runs as the user Debian-exim, which the host need not
// have: exim runs in a mount namespace where /etc/passwd and /etc/group
// are copies that add it (with a uid no host user has), so nothing on the
// host changes. It presents cert on STARTTLS and takes AUTH PLAIN and
// LOGIN over TLS; recipients whose local part begins with "reject" get
// 550 5.1.1 at RCPT, "defer" 451 4.3.0. It delivers to one Maildir with
// CRLF line ends, adding Return-path and Envelope-to.
func startExim(t *testing.T, cert *smtptest.Certificate, o eximOptions) *exim {
	t.Helper()
	bin := requireExim(t)
	dir := peerDir(t)
	uid := unusedUIDs(t, 1)[0]
	e := &exim{Addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), dir: dir}
	for _, sub := range []string{"spool", "mail", "log"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, sub), uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "passwd"), readRootFile("/etc/passwd")+fmt.Sprintf("Debian-exim:x:%d:%d:exim:/nonexistent:/usr/sbin/nologin\n", uid, uid))
	writeFile(t, filepath.Join(dir, "group"), readRootFile("/etc/group")+fmt.Sprintf("Debian-exim:x:%d:\n", uid))
	writeFile(t, filepath.Join(dir, "cert.pem"), string(cert.CertPEM))
	writeFile(t, filepath.Join(dir, "key.pem"), string(cert.KeyPEM))
	conf := filepath.Join(dir, "exim.conf")
	writeFile(t, conf, eximConfig(bin, dir, o))
	cmd := exec.Command("unshare", "-m", "/bin/sh", "-c",
		`mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && exec "$3" -bdf -oX "$4" -odi -C "$5"`,
		"sh", filepath.Join(dir, "passwd"), filepath.Join(dir, "group"), bin, strings.TrimPrefix(e.Addr, "127.0.0.1:"), conf)
	e.proc = startProc(t, cmd)
	t.Cleanup(func() {
		e.proc.cmd.Process.Kill()
		<-e.proc.done
		if t.Failed() {
			out, _ := exec.Command("find", e.dir).CombinedOutput()
			t.Logf("exim's files:\n%s", out)
			t.Logf("exim's mainlog:\n%s\nrejectlog:\n%s\npaniclog:\n%s", e.logFile("main"), e.logFile("reject"), e.logFile("panic"))
		}
	})
	waitGreets(t, e.proc, "exim", filepath.Join(dir, "log", "mainlog"), [2]string{"tcp", e.Addr})
	return e
}

// eximConfig is the test exim's configuration: Debian's exim with its
// defaults, which are strict (a command sent before the reply to the one
// before, where PIPELINING was not offered, is a synchronization error
// and the connection is dropped), plus what the test needs.
func eximConfig(bin, dir string, o eximOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "exim_path = %s\n", bin) // it re-executes itself for deliveries
	fmt.Fprintf(&b, "primary_hostname = mx.%s\n", eximDomain)
	fmt.Fprintf(&b, "spool_directory = %s/spool\n", dir)
	fmt.Fprintf(&b, "log_file_path = %s/log/%%slog\n", dir)
	b.WriteString("log_selector = +smtp_connection +smtp_protocol_error +smtp_syntax_error +tls_cipher\n")
	b.WriteString("keep_environment =\n")
	fmt.Fprintf(&b, "domainlist local_domains = %s\n", eximDomain)
	fmt.Fprintf(&b, "tls_certificate = %s/cert.pem\ntls_privatekey = %s/key.pem\n", dir, dir)
	b.WriteString("tls_advertise_hosts = *\n")
	b.WriteString("message_size_limit = 1M\n")
	// Deliver every message at once (-odi), also past the 10th of a
	// connection, which exim would otherwise leave for a queue runner.
	b.WriteString("smtp_accept_queue_per_connection = 0\n")
	b.WriteString("smtputf8_advertise_hosts = *\n")
	if o.noPipelining {
		b.WriteString("pipelining_advertise_hosts = :\n")
	}
	if o.noChunking {
		b.WriteString("chunking_advertise_hosts = :\n")
	}
	b.WriteString("acl_smtp_rcpt = acl_rcpt\n")
	b.WriteString(`
begin acl
acl_rcpt:
  deny    local_parts = ^reject
          message = 5.1.1 no such user here
  defer   local_parts = ^defer
          message = 4.3.0 not now
  accept  domains = +local_domains
  deny    message = 5.7.1 relay not permitted

begin routers
local:
  driver = accept
  domains = +local_domains
  transport = maildir

begin transports
maildir:
  driver = appendfile
`)
	fmt.Fprintf(&b, "  directory = %s/mail\n", dir)
	b.WriteString(`  maildir_format
  create_directory
  use_crlf
  envelope_to_add
  return_path_add
  mode = 0640

begin retry
*  *  F,1h,1m

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_advertise_condition = ${if def:tls_in_cipher}
`)
	// One user: the password compared as exim's documentation shows.
	for user, pass := range eximUsers {
		fmt.Fprintf(&b, "  server_condition = ${if and {{eq{$auth2}{%s}}{eq{$auth3}{%s}}}}\n", user, pass)
		fmt.Fprintf(&b, "  server_set_id = $auth2\n")
		b.WriteString(`login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_advertise_condition = ${if def:tls_in_cipher}
`)
		fmt.Fprintf(&b, "  server_condition = ${if and {{eq{$auth1}{%s}}{eq{$auth2}{%s}}}}\n", user, pass)
		fmt.Fprintf(&b, "  server_set_id = $auth1\n")
	}
	return b.String()
}

// unusedUIDs are n uids no user of /etc/passwd has, for the users a
// peer runs as inside its own mount namespace.
func unusedUIDs(t *testing.T, n int) []int {
	t.Helper()
	used := map[int]bool{}
	for line := range strings.Lines(readRootFile("/etc/passwd")) {
		if f := strings.Split(line, ":"); len(f) > 3 {
			n, _ := strconv.Atoi(f[2])
			used[n] = true
		}
	}
	var uids []int
	for uid := 64100; uid < 65000 && len(uids) < n; uid++ {
		if !used[uid] {
			uids = append(uids, uid)
		}
	}
	if len(uids) < n {
		t.Fatalf("fewer than %d unused uids between 64100 and 65000", n)
	}
	return uids
}

// logFile is one of exim's logs ("main", "reject", "panic").
func (e *exim) logFile(name string) string {
	return readRootFile(filepath.Join(e.dir, "log", name+"log"))
}

// messages returns what exim delivered, each as stored.
func (e *exim) messages(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(e.dir, "mail", sub))
		if err != nil {
			continue // not made before the first delivery
		}
		for _, en := range entries {
			b, err := os.ReadFile(filepath.Join(e.dir, "mail", sub, en.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

// waitMessages waits until exim has delivered at least n messages.
func (e *exim) waitMessages(t *testing.T, n int, timeout time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	waitFor(t, timeout, fmt.Sprintf("exim to deliver %d messages", n), func() bool {
		got = e.messages(t)
		return len(got) >= n
	})
	return got
}

// viaExim points a relayq at e: STARTTLS required (e's certificate
// trusted), AUTH with mechanism method ("" lets relayq pick).
func viaExim(e *exim, cert string, method string) func(settings) {
	return func(s settings) {
		s.set("relay", "url", tomlString("smtp://"+e.Addr))
		s.set("relay.tls", "ca_file", tomlString(cert))
		s.set("relay.tls", "require_tls", "true")
		for user, pass := range eximUsers {
			s.set("relay.auth", "user", tomlString(user))
			s.set("relay.auth", "pass", tomlString(pass))
		}
		if method != "" {
			s.set("relay.auth", "method", tomlString(method))
		}
	}
}

var envelopeTo = regexp.MustCompile(`(?m)^Envelope-to: (.*)\r$`)

// TestEximRelay: `relayq sendmail` and SMTP on the Unix socket → relayq →
// exim (Debian 12's exim4-daemon-light, its strict defaults: a command
// sent ahead of a reply where PIPELINING is not offered is a
// synchronization error) over STARTTLS with AUTH → exim's Maildir.
// For each of: exim as configured by default (PIPELINING, CHUNKING),
// without PIPELINING, without CHUNKING; and AUTH PLAIN and LOGIN:
// 40 messages over pooled connections, an 8-bit body, an SMTPUTF8
// recipient and sender, one message to a recipient exim refuses (550 at
// RCPT: dead-lettered for that recipient only, the others delivered) and
// one exim defers (451: deferred, still queued). Every message arrives
// once, byte for byte after the header lines exim adds, exim logs no
// protocol or synchronization error, and relayq used no more connections
// than its pool allows per run.
func TestEximRelay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      eximOptions
		method string
	}{
		{"defaults/PLAIN", eximOptions{}, "PLAIN"},
		{"no PIPELINING/LOGIN", eximOptions{noPipelining: true}, "LOGIN"},
		{"no CHUNKING", eximOptions{noChunking: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := smtptest.NewCertificate(t)
			e := startExim(t, cert, tc.o)
			d := newDaemon(t, nil)
			caFile := filepath.Join(d.dir, "exim-ca.pem")
			writeFile(t, caFile, string(cert.CertPEM))
			viaExim(e, caFile, tc.method)(d.settings)
			d.settings.set("retry", "initial_interval", `"1h"`) // the deferred one stays deferred
			d.settings.set("retry", "max_interval", `"1h"`)
			d.writeConfig()
			d.start()

			from := "sender@example.org"
			want := map[string][]byte{} // recipient → body
			var sent int
			submit := func(to []string, body []byte, viaSendmail bool) {
				t.Helper()
				if viaSendmail {
					if res := d.sendmail(body, append([]string{"-i", "-f", from}, to...)...); res.code != 0 {
						t.Fatalf("relayq sendmail: %v", res)
					}
				} else {
					d.submit(t, from, to, body)
				}
				sent++
			}
			for i := range 40 {
				rcpt := fmt.Sprintf("user%d@%s", i, eximDomain)
				body := newMessage(i, from, []string{rcpt}, 10+i*7)
				want[rcpt] = body
				submit([]string{rcpt}, body, i%4 == 0)
			}
			// 8-bit body (BODY=8BITMIME), and an SMTPUTF8 envelope.
			eight := append(newMessage(100, from, []string{"eight@" + eximDomain}, 3), "Grüße aus Köln — 8-bit UTF-8\r\n.\r\nlast line\r\n"...)
			want["eight@"+eximDomain] = eight
			submit([]string{"eight@" + eximDomain}, eight, true)
			utf8Rcpt := "jürgen@" + eximDomain
			utf8Body := []byte("From: <sender@example.org>\r\nTo: " + utf8Rcpt + "\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nX-Seq: 101\r\n\r\nUTF-8 envelope\r\n")
			want[utf8Rcpt] = utf8Body
			if _, err := submitSMTPUTF8(d.submitSocket(), "sénder@example.org", utf8Rcpt, utf8Body); err != nil {
				t.Fatalf("SMTPUTF8 submission: %v", err)
			}
			// One refused recipient beside a good one; one deferred.
			mixed := newMessage(102, from, []string{"mixed@" + eximDomain, "rejected@" + eximDomain}, 4)
			want["mixed@"+eximDomain] = mixed
			submit([]string{"mixed@" + eximDomain, "rejected@" + eximDomain}, mixed, false)
			submit([]string{"deferred@" + eximDomain}, newMessage(103, from, []string{"deferred@" + eximDomain}, 4), false)

			// A line of 2,000 octets (RFC 5322 allows 998; sendmail takes
			// it), and a message over exim's message_size_limit (1 MiB
			// here), which relayq declares with SIZE: exim refuses it at
			// MAIL (552), and relayq dead-letters it without sending it.
			long := append(newMessage(104, from, []string{"long@" + eximDomain}, 3), strings.Repeat("y", 2000)+"\r\nend\r\n"...)
			want["long@"+eximDomain] = long
			submit([]string{"long@" + eximDomain}, long, true)
			submit([]string{"big@" + eximDomain}, newMessage(105, from, []string{"big@" + eximDomain}, 20000), false)

			got := e.waitMessages(t, len(want), 60*time.Second)
			time.Sleep(time.Second) // a duplicate would come right after
			got = e.messages(t)
			seen := map[string]int{}
			for _, stored := range got {
				m := envelopeTo.FindSubmatch(stored)
				if m == nil {
					t.Errorf("a message without Envelope-to:\n%s", stored)
					continue
				}
				rcpt := string(m[1])
				seen[rcpt]++
				w, ok := want[rcpt]
				if !ok {
					t.Errorf("exim delivered a message for %s, which nobody sent or exim refused", rcpt)
					continue
				}
				if seen[rcpt] == 1 {
					from := from
					if rcpt == utf8Rcpt {
						from = "sénder@example.org"
					}
					checkDelivered(t, stored, w, rcpt, from)
				}
			}
			for rcpt := range want {
				if seen[rcpt] != 1 {
					t.Errorf("exim delivered %d messages for %s, want 1", seen[rcpt], rcpt)
				}
			}
			waitFor(t, 10*time.Second, "the refused recipient and the message too large to be dead-lettered", func() bool { return len(d.deadList(t)) == 2 })
			if lines := grepLines(e.logFile("main"), "big@"+eximDomain); len(grepLines(strings.Join(lines, "\n"), "<=")) > 0 {
				t.Errorf("exim received the message over its size limit: %v", lines)
			}
			if l := d.queueList(t); len(l) != 1 {
				t.Errorf("queue holds %d messages, want the deferred one: %+v", len(l), l)
			}
			mainlog := e.logFile("main")
			for _, bad := range []string{"synchronization error", "protocol error", "syntax error", "SMTP command timeout", "too many nonmail commands"} {
				if lines := grepLines(mainlog, bad); len(lines) > 0 {
					t.Errorf("exim logged %q:\n%s", bad, strings.Join(lines, "\n"))
				}
			}
			conns := grepLines(mainlog, "SMTP connection from")
			if len(conns) > 8 {
				t.Errorf("relayq opened %d connections to exim for %d messages (pool of 5): %v", len(conns), sent, conns)
			}
			if auth := grepLines(mainlog, "A="); len(auth) == 0 || (tc.method != "" && len(grepLines(mainlog, "A="+strings.ToLower(tc.method)+":relayq")) == 0) {
				t.Errorf("exim logged no AUTH %s login as relayq: %v", tc.method, auth)
			}
			if len(grepLines(mainlog, "X=TLS")) == 0 {
				t.Error("exim logged no message received over TLS")
			}
		})
	}
}

// submitSMTPUTF8 sends one message with an SMTPUTF8 envelope over the
// Unix socket at path.
func submitSMTPUTF8(path, from, rcpt string, body []byte) (string, error) {
	c, err := helloSMTP("unix", path, time.Minute)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Mail(from, &smtp.MailOptions{UTF8: true}); err != nil {
		return "", fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return "", fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", fmt.Errorf("end of data: %w", err)
	}
	return resp.StatusText, nil
}
