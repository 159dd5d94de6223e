package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// The Debian package, end to end, in a debootstrap'ed Debian 12 chroot (so
// the host's packages, whose Postfix the other tests use, are never
// touched):
//
//	Postfix null client (a message deferred in its queue)
//	  → apt install ./relayq_1.deb (Postfix removed, bsd-mailx kept)
//	  → /usr/sbin/sendmail and mail(1) in the chroot → relayq serve (the
//	    relayq user, the packaged config, edited) → smtptest sink on the
//	    host's loopback (the chroot shares the network namespace)
//	  → relayq import-postfix --queue: Postfix's deferred message → relayq
//	    → the sink, its Postfix queue file removed
//	  → upgrade to relayq_2.deb with a message queued while the relay
//	    refuses: config edit kept, message kept and delivered after
//	  → remove (mail still queued is listed), purge (queue and config gone).
//
// No systemd runs in a chroot: the test starts and restarts relayq serve
// itself where systemd would (postinst's deb-systemd-invoke is refused by
// policy-rc.d, as on a host with a policy).

// chrootCache holds the base system (debootstrap minbase of bookworm with
// postfix and bsd-mailx downloaded, not installed) as a tar file, built
// once; each run extracts it into a directory of its own beside it.
const (
	chrootCache  = "/var/cache/relayq-test-chroot"
	chrootTar    = chrootCache + "/bookworm-postfix-v1.tar"
	debianMirror = "http://deb.debian.org/debian"
)

// requireChroot skips the test (fails it under tests/run.sh) unless it can
// build a chroot: root, debootstrap, chroot, mount.
func requireChroot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (debootstrap, chroot, mount)"
	}
	for _, tool := range []string{"debootstrap", "chroot", "mount", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			why = tool + " not installed"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv(realPeersEnv) != "" {
		t.Fatalf("Debian package test impossible under %s=1 (tests/run.sh installs debootstrap): %s", realPeersEnv, why)
	}
	t.Skipf("Debian package test skipped: %s", why)
}

// debChroot is one extracted chroot.
type debChroot struct {
	t   *testing.T
	dir string
}

// sh runs a shell script in the chroot as root and returns its combined
// output; failure fails the test.
func (c *debChroot) sh(script string) string {
	c.t.Helper()
	out, err := c.shErr(script)
	if err != nil {
		c.t.Fatalf("in the chroot: %s\n%v\n%s", script, err, out)
	}
	return out
}

func (c *debChroot) shErr(script string) (string, error) {
	cmd := exec.Command("chroot", c.dir, "/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C", "HOME=/root"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *debChroot) path(p string) string { return filepath.Join(c.dir, p) }

// buildChrootCache makes chrootTar: debootstrap, then postfix and
// bsd-mailx downloaded into apt's cache so each run installs them offline.
func buildChrootCache(t *testing.T) {
	if _, err := os.Stat(chrootTar); err == nil {
		return
	}
	start := time.Now()
	if err := os.MkdirAll(chrootCache, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(chrootCache, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out), 3000))
		}
	}
	run("debootstrap", "--variant=minbase", "bookworm", dir, debianMirror)
	run("chroot", dir, "apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends", "postfix", "bsd-mailx")
	tmp := chrootTar + ".tmp"
	run("tar", "-C", dir, "-cf", tmp, ".")
	if err := os.Rename(tmp, chrootTar); err != nil {
		t.Fatal(err)
	}
	t.Logf("chroot cache built in %v", time.Since(start).Round(time.Second))
}

// newDebChroot extracts the cached base into a fresh directory with /proc
// mounted and a policy-rc.d that refuses to start services; all undone at
// cleanup.
func newDebChroot(t *testing.T) *debChroot {
	buildChrootCache(t)
	dir, err := os.MkdirTemp(chrootCache, "run-")
	if err != nil {
		t.Fatal(err)
	}
	c := &debChroot{t: t, dir: dir}
	t.Cleanup(func() {
		syscall.Unmount(c.path("proc"), syscall.MNT_DETACH)
		os.RemoveAll(dir)
	})
	if out, err := exec.Command("tar", "-C", dir, "-xf", chrootTar).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	// The chroot's / (MkdirTemp makes it 0700, and so did the tar's "."):
	// users other than root, Postfix's and relayq's, must reach into it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("proc", c.path("proc"), "proc", 0, ""); err != nil {
		t.Fatalf("mount proc: %v", err)
	}
	writeFileT(t, c.path("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", 0o755)
	return c
}

func writeFileT(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// buildDeb runs packaging/build-deb.sh with VERSION and returns the .deb.
func buildDeb(t *testing.T, version string) string {
	t.Helper()
	cmd := exec.Command("bash", "packaging/build-deb.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "VERSION="+version)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, out)
	}
	deb, _ := filepath.Abs(filepath.Join("..", strings.TrimSpace(lastLine(string(out)))))
	return deb
}

// installPostfixNullClient installs Postfix as a null client whose relay
// (port 9 on loopback) refuses connections, submits a message and waits
// until Postfix has deferred it; Postfix is then stopped. Its SMTP server
// is disabled so it listens on no port of the shared network namespace.
func installPostfixNullClient(c *debChroot) string {
	c.sh(`echo "postfix postfix/main_mailer_type select Satellite system
postfix postfix/relayhost string [127.0.0.1]:9
postfix postfix/mailname string relayq-test.example" | debconf-set-selections
apt-get install -y -q --no-install-recommends --no-download postfix bsd-mailx`)
	// No syslog in the chroot: Postfix logs to a file.
	c.sh(`postconf -e master_service_disable=inet maillog_file=/var/log/postfix.log && { postfix start || { cat /var/log/postfix.log; exit 1; }; }`)
	c.sh(`printf 'Subject: left in postfix\n\nbody\n' | /usr/sbin/sendmail -f root@relayq-test.example deferred@example.net`)
	var queue string
	waitFor(c.t, 30*time.Second, "postfix deferring the message", func() bool {
		queue = c.sh("postqueue -p")
		// While the queue manager moves the message from active to
		// deferred, showq can list it in both, "in 2 Requests": wait for
		// the move to end.
		return strings.Contains(queue, "Connection refused") && strings.Contains(queue, "in 1 Request")
	})
	// postfix stop signals the master and returns; its master.pid stays
	// behind. Wait until the master has gone, as an operator would before
	// import-postfix --queue (which refuses while it runs).
	c.sh(`pid=$(cat /var/spool/postfix/pid/master.pid); postfix stop; for i in $(seq 300); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; echo "postfix master $pid still running"; exit 1`)
	return queue
}

// relayqDaemon is relayq serve started in the chroot as the relayq user.
type relayqDaemon struct{ cmd *exec.Cmd }

func startChrootDaemon(c *debChroot) *relayqDaemon {
	c.t.Helper()
	cmd := exec.Command("chroot", "--userspec=relayq:relayq", c.dir, "/usr/sbin/relayq", "serve")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin", "HOME=/var/lib/relayq"}
	log, err := os.Create(filepath.Join(c.t.TempDir(), "serve.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	d := &relayqDaemon{cmd: cmd}
	c.t.Cleanup(d.stop)
	// The control socket comes once the queue is open: the submission
	// socket is there earlier, answering "starting".
	waitFor(c.t, 20*time.Second, "relayq serve in the chroot to listen", func() bool {
		_, err := os.Stat(c.path("var/lib/relayq/control.sock"))
		return err == nil
	})
	return d
}

// stop ends the daemon as systemd does (SIGTERM) and waits for it.
func (d *relayqDaemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}

func TestDebianPackage(t *testing.T) {
	requireChroot(t)
	start := time.Now()
	deb1, deb2 := buildDeb(t, "0.13.0~e2e1"), buildDeb(t, "0.13.0~e2e2")
	c := newDebChroot(t)
	t.Logf("packages built and chroot ready in %v", time.Since(start).Round(time.Second))

	postqueue := installPostfixNullClient(c)
	if !strings.Contains(postqueue, "deferred@example.net") || !strings.Contains(postqueue, "in 1 Request") {
		t.Fatalf("postqueue -p before relayq:\n%s", postqueue)
	}
	mainCf := c.sh("postconf -n")

	for _, d := range []string{deb1, deb2} {
		copyFile(t, d, c.path("tmp/"+filepath.Base(d)))
	}
	out := c.sh("apt-get install -y -q /tmp/" + filepath.Base(deb1))
	checkInstalled(t, c, out, "0.13.0~e2e1")

	// What is left in Postfix's queue: import-postfix reads main.cf now
	// that postconf is gone, and counts it.
	out = c.sh("relayq import-postfix --dry-run")
	for _, want := range []string{`url = "smtp://127.0.0.1:9"`, "still holds 1 message(s): deferred 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("relayq import-postfix --dry-run lacks %q (postconf -n was:\n%s):\n%s", want, mainCf, out)
		}
	}

	sink := smtptest.NewServer(t, smtptest.Options{})
	// The operator's edit of the conffile: the relay, and a short retry
	// (a key the packaged file leaves at its default: added in its table).
	c.sh(fmt.Sprintf(`sed -i -e 's#^url = "smtp://localhost:25"$#url = "smtp://%s"#' /etc/relayq/config.toml && grep -qx 'url = "smtp://%[1]s"' /etc/relayq/config.toml && printf '\n[retry]\ninitial_interval = "1s"\n' >>/etc/relayq/config.toml`, sink.Addr()))
	daemon := startChrootDaemon(c)
	c.sh(`printf 'Subject: via sendmail\n\nbody\n' | /usr/sbin/sendmail -f root@relayq-test.example one@example.net`)
	c.sh(`echo body | mail -s 'via mail(1)' two@example.net`)
	msgs := sink.WaitMessages(t, 2, 30*time.Second)
	checkRecipients(t, msgs, "one@example.net", "two@example.net")

	// The message Postfix left deferred: submitted to relayq, and gone
	// from Postfix's queue.
	out = c.sh("relayq import-postfix --queue")
	if !strings.Contains(out, "deferred@example.net") || !strings.Contains(out, "submitted to relayq") {
		t.Errorf("relayq import-postfix --queue:\n%s", out)
	}
	msgs = sink.WaitMessages(t, 3, 30*time.Second)
	checkRecipients(t, msgs, "deferred@example.net")
	if left := c.sh("find /var/spool/postfix/deferred -type f"); left != "" {
		t.Errorf("Postfix's queue still holds %s", left)
	}
	if out := c.sh("relayq import-postfix --queue --dry-run"); !strings.Contains(out, "is empty") {
		t.Errorf("relayq import-postfix --queue --dry-run after the import:\n%s", out)
	}

	// Upgrade with a message queued (the relay refuses it for now) and one
	// sent while the daemon is down (the maildrop).
	sink.SetScript(smtptest.Script{Mail: smtptest.Times(1000, smtptest.Reply(451, "4.3.0 try later"))})
	c.sh(`printf 'Subject: queued across the upgrade\n\nbody\n' | /usr/sbin/sendmail -f root@relayq-test.example three@example.net`)
	waitFor(t, 30*time.Second, "relayq to defer the message", func() bool {
		return strings.Contains(c.sh("mailq"), "three@example.net") && strings.Contains(c.sh("mailq"), "451")
	})
	daemon.stop()
	c.sh(`printf 'Subject: sent during the upgrade\n\nbody\n' | /usr/sbin/sendmail -f root@relayq-test.example four@example.net`)
	out = c.sh("apt-get install -y -q /tmp/" + filepath.Base(deb2))
	if v := c.sh("relayq --version"); !strings.Contains(v, "relayq 0.13.0~e2e2 ") {
		t.Errorf("after the upgrade relayq --version says %q", v)
	}
	if conf := c.sh("cat /etc/relayq/config.toml"); !strings.Contains(conf, sink.Addr()) {
		t.Errorf("the upgrade lost the config edit:\n%s", out)
	}
	if q := c.sh("mailq"); !strings.Contains(q, "three@example.net") {
		t.Errorf("the upgrade lost the queued message:\n%s", q)
	}
	sink.SetScript(smtptest.Script{})
	daemon = startChrootDaemon(c)
	c.sh("relayq flush")
	msgs = sink.WaitMessages(t, 5, 60*time.Second)
	checkRecipients(t, msgs, "three@example.net", "four@example.net")

	checkRemovePurge(t, c, sink, daemon)
	t.Logf("TestDebianPackage took %v", time.Since(start).Round(time.Second))
}

// checkInstalled: apt removed Postfix (its queue directory kept), kept
// bsd-mailx (relayq provides mail-transport-agent), and relayq is in
// place: links, conffile, user, state directory, unit enabled, man pages,
// completion, version.
func checkInstalled(t *testing.T, c *debChroot, aptOut, version string) {
	t.Helper()
	if !strings.Contains(aptOut, "Removing postfix") {
		t.Errorf("apt did not remove postfix:\n%s", aptOut)
	}
	status := c.sh("dpkg-query -W -f='${Package} ${Status}\n' postfix bsd-mailx relayq")
	for _, want := range []string{"postfix deinstall ok config-files", "bsd-mailx install ok installed", "relayq install ok installed"} {
		if !strings.Contains(status, want) {
			t.Errorf("package states lack %q:\n%s", want, status)
		}
	}
	c.sh("apt-get check")
	// relayq is built with cgo (the C library's NSS names submitters and
	// checks groups), relayq-sendmail without (build-deb.sh).
	checks := `set -e
test "$(readlink -f /usr/sbin/sendmail)" = /usr/sbin/relayq-sendmail
for l in /usr/bin/mailq /usr/bin/newaliases; do test "$(readlink -f $l)" = /usr/sbin/relayq; done
grep -qx /etc/relayq/config.toml /var/lib/dpkg/info/relayq.conffiles
grep -q /usr/share/doc/relayq/config.toml.example /etc/relayq/config.toml
grep -q '^max_lifetime = "120h"' /usr/share/doc/relayq/config.toml.example
echo "keys set: $(grep -c '^[a-z_]* = ' /etc/relayq/config.toml)"
stat -c '%a %U' /etc/relayq/config.toml /var/lib/relayq
id -u relayq
test -L /etc/systemd/system/multi-user.target.wants/relayq.service
grep -q '^ExecStart=/usr/sbin/relayq ' /lib/systemd/system/relayq.service
zcat /usr/share/man/man8/relayq.8.gz | grep -c '^.SS '
zcat /usr/share/man/man1/relayq-sendmail.1.gz /usr/share/man/man5/relayq.toml.5.gz | grep -q ` + version + `
grep -q import-postfix /usr/share/bash-completion/completions/relayq
test -d /var/spool/postfix/deferred
ldd /usr/sbin/relayq | grep -q 'libc.so.6 =>'
if ldd /usr/sbin/relayq-sendmail >/dev/null 2>&1; then echo relayq-sendmail is dynamically linked; exit 1; fi
dpkg-query -W -f='${Depends}\n' relayq | grep -q '^libc6'
relayq --version`
	out := c.sh(checks)
	// The conffile sets only what differs from the defaults (the relay's
	// url); every key is documented in the example beside the README.
	for _, want := range []string{"644 root", "711 relayq", "relayq " + version + " (", "keys set: 1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("installed relayq: %q missing from:\n%s", want, out)
		}
	}
}

// checkRemovePurge: remove with a message still queued keeps the queue and
// lists the message; purge deletes queue, config and links.
func checkRemovePurge(t *testing.T, c *debChroot, sink *smtptest.Server, daemon *relayqDaemon) {
	t.Helper()
	sink.SetScript(smtptest.Script{Mail: smtptest.Times(1000, smtptest.Reply(451, "4.3.0 try later"))})
	c.sh(`printf 'Subject: left at removal\n\nbody\n' | /usr/sbin/sendmail -f root@relayq-test.example five@example.net`)
	waitFor(t, 30*time.Second, "relayq to defer the message", func() bool {
		return strings.Contains(c.sh("mailq"), "451")
	})
	// The daemon as systemd would stop it: prerm's deb-systemd-invoke
	// is refused by policy-rc.d in a chroot.
	daemon.stop()
	out := c.sh("apt-get remove -y -q relayq")
	if !strings.Contains(out, "messages are still queued") || !strings.Contains(out, "five@example.net") {
		t.Errorf("apt remove did not list the queued message:\n%s", out)
	}
	c.sh("test -s /var/lib/relayq/queue.db && test ! -e /usr/sbin/sendmail && test -e /etc/relayq/config.toml")
	c.sh("apt-get purge -y -q relayq")
	left := c.sh("ls -d /var/lib/relayq /etc/relayq /usr/sbin/relayq /usr/sbin/relayq-sendmail /usr/sbin/sendmail /usr/bin/mailq 2>/dev/null; true")
	if strings.TrimSpace(left) != "" {
		t.Errorf("purge left:\n%s", left)
	}
	if st := c.sh("dpkg-query -W -f='${Status}' relayq 2>&1; true"); !regexp.MustCompile(`not-installed|no packages found`).MatchString(st) {
		t.Errorf("relayq after purge: %s", st)
	}
}

func checkRecipients(t *testing.T, msgs []smtptest.Received, want ...string) {
	t.Helper()
	got := map[string]bool{}
	for _, m := range msgs {
		for _, r := range m.To {
			got[r] = true
		}
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("the sink did not get mail for %s (got %v)", w, got)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFileT(t, to, string(data), 0o644)
}
