package tests

// Real peers from Debian packages: a private Dovecot (LMTP, passwd-file
// users, Maildirs, an auth socket) and a private Postfix (smtpd with
// STARTTLS and SASL through Dovecot, relaying into Dovecot's LMTP), each in
// a temporary directory, on random loopback ports, never touching
// /etc/postfix or /etc/dovecot. Both need root (Postfix's master refuses to
// run otherwise): the test runs as root, or starts them with `sudo -n`.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// realPeersEnv, when set (tests/run.sh sets it), makes a missing peer a
// failure instead of a skip.
const realPeersEnv = "RELAYQ_REAL_PEERS"

// peerDomain is the mail domain of the Dovecot users and of Postfix's
// relay_domains.
const peerDomain = "peers.test"

// requirePeers skips the test (fails it under tests/run.sh) unless the
// programs of the real peers are installed and can run as root.
func requirePeers(t *testing.T) {
	t.Helper()
	var missing []string
	for _, p := range []struct{ pkg, path string }{
		{"postfix", "/usr/sbin/postfix"},
		{"postfix", "/usr/lib/postfix/sbin/master"},
		{"dovecot-core", "/usr/sbin/dovecot"},
		{"dovecot-lmtpd", "/usr/lib/dovecot/lmtp"},
	} {
		if _, err := os.Stat(p.path); err != nil && !slices.Contains(missing, p.pkg) {
			missing = append(missing, p.pkg)
		}
	}
	why := ""
	switch {
	case len(missing) > 0:
		why = "Debian packages not installed: " + strings.Join(missing, ", ")
	case os.Geteuid() != 0 && exec.Command("sudo", "-n", "true").Run() != nil:
		why = "Postfix and Dovecot need root: run as root or with password-less sudo"
	}
	if why == "" {
		return
	}
	if os.Getenv(realPeersEnv) != "" {
		t.Fatalf("real peers unavailable under %s=1 (tests/run.sh installs them): %s", realPeersEnv, why)
	}
	t.Skipf("real peers unavailable (%s); tests/run.sh installs them", why)
}

// asRoot is a command run as root: directly when the test is root, else
// through `sudo -n`.
func asRoot(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("sudo", append([]string{"-n", name}, args...)...)
}

// runRoot runs a command as root and fails the test if it fails.
func runRoot(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := asRoot(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// peerDir makes a short temporary directory (socket paths are limited to
// 108 bytes) that the peers' unprivileged users can traverse, removed as
// root at the end of the test, after the peers have stopped.
func peerDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rqp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := asRoot("rm", "-rf", dir).Run(); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeFile writes a world-readable file (the peers' own users read it).
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// peerProc is a peer's foreground process, with its output kept.
type peerProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startProc(t testing.TB, cmd *exec.Cmd) *peerProc {
	t.Helper()
	p := &peerProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd, err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *peerProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits for the process to end, killing it after timeout.
func (p *peerProc) waitExit(t testing.TB, timeout time.Duration) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Errorf("%s still running %v after being told to stop; killing it", p.cmd, timeout)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// greets reports whether network/addr accepts a connection and greets with
// 220 (SMTP and LMTP alike).
func greets(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220") {
		return false
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return true
}

// waitGreets waits until every listener of a starting peer greets.
func waitGreets(t testing.TB, p *peerProc, name, logFile string, listeners ...[2]string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, l := range listeners {
		for !greets(l[0], l[1]) {
			if p.exited() || time.Now().After(deadline) {
				t.Fatalf("%s not answering on %s %s (exited: %v)\noutput: %s\nlog:\n%s",
					name, l[0], l[1], p.exited(), p.out, readRootFile(logFile))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// waitTLS waits until addr accepts a TLS handshake (any certificate).
func waitTLS(t testing.TB, p *peerProc, name, logFile, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s: no TLS on %s (exited: %v): %v\noutput: %s\nlog:\n%s",
				name, addr, p.exited(), err, p.out, readRootFile(logFile))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readRootFile returns a file a peer wrote, read as root if need be.
func readRootFile(path string) string {
	if b, err := os.ReadFile(path); err == nil {
		return string(b)
	}
	out, err := asRoot("cat", path).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v %s)", path, err, out)
	}
	return string(out)
}

// mailUser is the system account the Maildirs belong to: the test's own
// user, so that it can read them, or nobody when the test runs as root
// (Dovecot refuses to deliver as root).
func mailUser(t testing.TB) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return os.Getuid(), os.Getgid()
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// dovecot is a private Dovecot instance.
type dovecot struct {
	dir      string
	Users    map[string]string // address → password
	LMTPAddr string            // 127.0.0.1:port
	LMTPSock string            // unix socket
	AuthSock string            // SASL socket for Postfix
	Log      string
	proc     *peerProc
}

// startDovecot runs a private Dovecot for users (address → password, all
// at peerDomain): LMTP on a loopback port and a unix socket, delivering to
// DIR/mail/LOCALPART/Maildir, and an auth socket for Postfix's SASL.
func startDovecot(t testing.TB, dir string, users map[string]string) *dovecot {
	t.Helper()
	dir = filepath.Join(dir, "dovecot")
	d := &dovecot{
		dir:      dir,
		Users:    users,
		LMTPAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		LMTPSock: filepath.Join(dir, "run", "lmtp"),
		AuthSock: filepath.Join(dir, "run", "auth-client"),
		Log:      filepath.Join(dir, "dovecot.log"),
	}
	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, gid := mailUser(t)
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(dir, "mail"), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	var passwd strings.Builder
	for _, addr := range slices.Sorted(maps.Keys(users)) {
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s:%d:%d::%s::\n", addr, users[addr], uid, gid, d.home(addr))
	}
	writeFile(t, filepath.Join(dir, "users"), passwd.String())
	host, port, _ := net.SplitHostPort(d.LMTPAddr)
	conf := filepath.Join(dir, "dovecot.conf")
	writeFile(t, conf, fmt.Sprintf(`# relayq tests: private instance
instance_name = relayq-%[1]s
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[3]s
protocols = lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
# store messages as received, CRLF and all, to compare them byte for byte
mail_save_crlf = yes
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[2]s/users
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[2]s/users
}
service lmtp {
  inet_listener lmtp {
    address = %[4]s
    port = %[5]s
  }
  unix_listener lmtp {
    mode = 0666
  }
}
service auth {
  unix_listener auth-client {
    mode = 0666
  }
}
# no growing delay after repeated failed logins
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
`, filepath.Base(filepath.Dir(dir)), dir, d.Log, host, port))
	d.proc = startProc(t, asRoot("/usr/sbin/dovecot", "-F", "-c", conf))
	t.Cleanup(func() {
		d.proc.cmd.Process.Signal(syscall.SIGTERM)
		d.proc.waitExit(t, 15*time.Second)
		if t.Failed() {
			t.Logf("dovecot output: %s\ndovecot log (%s):\n%s", d.proc.out, d.Log, readRootFile(d.Log))
		}
	})
	waitGreets(t, d.proc, "dovecot", d.Log, [2]string{"tcp", d.LMTPAddr}, [2]string{"unix", d.LMTPSock})
	return d
}

// home is the home directory of user addr; its mail is in home/Maildir.
func (d *dovecot) home(addr string) string {
	local, _, _ := strings.Cut(addr, "@")
	return filepath.Join(d.dir, "mail", local)
}

// mail returns the messages in addr's Maildir (new and cur), oldest first.
func (d *dovecot) mail(t testing.TB, addr string) [][]byte {
	t.Helper()
	type file struct {
		name string
		body []byte
	}
	var files []file
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(d.home(addr), "Maildir", sub)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // not created yet
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, file{e.Name(), b})
		}
	}
	// Maildir names start with the delivery time in seconds, then M<µs>.
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	out := make([][]byte, len(files))
	for i, f := range files {
		out[i] = f.body
	}
	return out
}

// waitMail waits until addr's Maildir holds n messages and returns them.
func (d *dovecot) waitMail(t testing.TB, addr string, n int, timeout time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	waitFor(t, timeout, fmt.Sprintf("%d message(s) in the Maildir of %s", n, addr), func() bool {
		got = d.mail(t, addr)
		return len(got) >= n
	})
	return got
}

// logLines returns the lines of Dovecot's log that contain every one of
// words.
func (d *dovecot) logLines(words ...string) []string {
	return grepLines(readRootFile(d.Log), words...)
}

func grepLines(text string, words ...string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) }) {
			out = append(out, line)
		}
	}
	return out
}

// postfix is a private Postfix instance: smtpd on a loopback port with
// STARTTLS (smtpd_tls_auth_only) and SASL through Dovecot, relaying mail
// for peerDomain to Dovecot's LMTP.
type postfix struct {
	dir   string
	Addr  string       // smtpd with STARTTLS, 127.0.0.1:port
	SAddr string       // smtpd in implicit TLS (smtps, wrapper mode), 127.0.0.1:port
	Name  string       // the only name in smtpd's certificate: mx.peers.test
	CA    *smtptest.CA // issued smtpd's certificate
	Log   string
	proc  *peerProc
}

// startPostfix runs a private Postfix in front of dv. lmtpNexthop is the
// relay transport's nexthop: "[127.0.0.1]:PORT" or "unix:/path".
func startPostfix(t testing.TB, dir string, dv *dovecot, lmtpNexthop string) *postfix {
	t.Helper()
	dir = filepath.Join(dir, "postfix")
	p := &postfix{
		dir:   dir,
		Addr:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		SAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		Name:  "mx." + peerDomain,
		CA:    smtptest.NewCA(t),
		Log:   filepath.Join(dir, "postfix.log"),
	}
	etc, spool, data := filepath.Join(dir, "etc"), filepath.Join(dir, "spool"), filepath.Join(dir, "data")
	for _, d := range []string{etc, spool, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runRoot(t, "chown", "postfix", data)
	// No IP address in the certificate: relayq connects to 127.0.0.1 and
	// must check the certificate against tls.servername.
	cert := p.CA.Issue(t, p.Name)
	certFile := filepath.Join(etc, "smtpd.pem")
	if err := os.WriteFile(certFile, append(cert.KeyPEM, cert.CertPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(etc, "main.cf"), fmt.Sprintf(`# relayq tests: private instance
compatibility_level = 3.6
queue_directory = %[1]s
data_directory = %[2]s
mail_owner = postfix
setgid_group = postdrop
maillog_file = %[3]s
maillog_file_prefixes = %[4]s
myhostname = mx.%[5]s
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
# leave the submitted headers alone, to compare the message byte for byte
local_header_rewrite_clients =
relay_domains = %[5]s
relay_transport = lmtp:%[6]s
smtpd_tls_chain_files = %[7]s
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = %[8]s
smtpd_sasl_authenticated_header = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject
`, spool, data, p.Log, dir, peerDomain, lmtpNexthop, certFile, dv.AuthSock))
	writeFile(t, filepath.Join(etc, "master.cf"), p.Addr+" inet n - n - - smtpd\n"+
		p.SAddr+" inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n"+postfixServices)

	p.proc = startProc(t, asRoot("/usr/sbin/postfix", "-c", etc, "start-fg"))
	t.Cleanup(func() {
		// What `postfix stop` does, without its polling in steps of a
		// second: SIGTERM to the master, which stops its children.
		pid, err := os.ReadFile(filepath.Join(spool, "pid", "master.pid"))
		if err == nil {
			err = asRoot("kill", "-TERM", strings.TrimSpace(string(pid))).Run()
		}
		if err != nil {
			t.Logf("stop postfix: %v", err)
			p.proc.cmd.Process.Signal(syscall.SIGTERM)
		}
		p.proc.waitExit(t, 15*time.Second)
		if t.Failed() {
			t.Logf("postfix output: %s\npostfix log (%s):\n%s", p.proc.out, p.Log, readRootFile(p.Log))
		}
	})
	waitGreets(t, p.proc, "postfix", p.Log, [2]string{"tcp", p.Addr})
	waitTLS(t, p.proc, "postfix", p.Log, p.SAddr)
	return p
}

// postfixServices is master.cf without smtpd: the services a relay needs,
// none chrooted.
const postfixServices = `cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// logLines returns the lines of Postfix's log that contain every one of
// words.
func (p *postfix) logLines(words ...string) []string {
	return grepLines(readRootFile(p.Log), words...)
}

// caFile writes the CA that issued smtpd's certificate into dir and returns
// its path.
func (p *postfix) caFile(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "peers-ca.pem")
	if err := os.WriteFile(path, p.CA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// splitDelivered splits a message as Dovecot stored it into the header
// lines the peers prepended and the rest, which must end with the message
// relayq was given: it returns ok=false unless stored ends with sent and
// everything before it is header lines.
func splitDelivered(stored, sent []byte) (added string, ok bool) {
	if !bytes.HasSuffix(stored, sent) {
		return "", false
	}
	added = string(stored[:len(stored)-len(sent)])
	for _, line := range strings.SplitAfter(added, "\r\n") {
		if line == "" {
			continue
		}
		name, _, colon := strings.Cut(line, ":")
		folded := strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")
		if !folded && (!colon || strings.ContainsAny(name, " \t")) {
			return added, false
		}
	}
	return added, true
}

// headerValue returns the (unfolded) value of the first header field name
// in a block of header lines.
func headerValue(header, name string) string {
	lines := strings.Split(header, "\r\n")
	for i, line := range lines {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(k, name) {
			continue
		}
		for _, cont := range lines[i+1:] {
			if !strings.HasPrefix(cont, " ") && !strings.HasPrefix(cont, "\t") {
				break
			}
			v += " " + strings.TrimSpace(cont)
		}
		return strings.TrimSpace(v)
	}
	return ""
}

// sentTo is a message a test gave relayq for one recipient, with its
// envelope sender ("" for the null sender).
type sentTo struct {
	body []byte
	from string
}

// deliveredTo finds the recipient in the Delivered-To line a peer's
// delivery writes before the message.
var deliveredTo = regexp.MustCompile(`(?m)^Delivered-To: (.*)\r$`)

// storedOnce checks what a peer stored (CRLF line ends, with a
// Delivered-To line naming the recipient): each message in want arrived
// exactly once, byte for byte after the header lines the peers prepended,
// with Return-Path naming its envelope sender (none, or "<>", for the null
// sender), and nothing else arrived. It returns the prepended header
// lines by recipient, for the caller's checks of what its peer adds.
func storedOnce(t *testing.T, peer string, stored [][]byte, want map[string]sentTo) map[string]string {
	t.Helper()
	added := map[string]string{}
	seen := map[string]int{}
	for _, msg := range stored {
		m := deliveredTo.FindSubmatch(msg)
		if m == nil {
			t.Errorf("%s stored a message without Delivered-To:\n%s", peer, msg)
			continue
		}
		rcpt := string(m[1])
		if seen[rcpt]++; seen[rcpt] > 1 {
			continue
		}
		w, ok := want[rcpt]
		switch {
		case !ok:
			t.Errorf("%s delivered a message for %s, which nobody sent or it refused", peer, rcpt)
		case w.from != "":
			added[rcpt] = checkDelivered(t, msg, w.body, rcpt, w.from)
		default:
			a, ok := splitDelivered(msg, w.body)
			if rp := headerValue(a, "Return-Path"); !ok || (rp != "" && rp != "<>") {
				t.Errorf("message to %s (null sender) is not the one sent after prepended header lines, or its Return-Path is %q:\n got %q\nwant …%q", rcpt, rp, msg, w.body)
			}
			added[rcpt] = a
		}
	}
	for rcpt := range want {
		if seen[rcpt] != 1 {
			t.Errorf("%s delivered %d messages for %s, want 1", peer, seen[rcpt], rcpt)
		}
	}
	return added
}

// deadReplies is the last reply of each dead-lettered recipient, on one
// line ("550 5.1.1 text").
func deadReplies(t *testing.T, d *daemon) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range d.deadList(t) {
		for _, r := range l.Recipients {
			out[r.Address] = r.LastReply
		}
	}
	return out
}

// numbered is prefix0 … prefix(n-1): the local parts of a peer's users.
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}
