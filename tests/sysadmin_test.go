package tests

// Sysadmin traps (issue 11 §6): what an ordinary user meets on a machine
// where relayq was installed as the README says. Like the security tests,
// these run the real binary as nobody, so they need root.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// ownStateHome makes d's state directory the one relayq's built-in default
// finds for an ordinary user, $XDG_STATE_HOME/relayq, and returns the
// environment that says so (with a HOME that does not exist).
func ownStateHome(t *testing.T, d *daemon) []string {
	t.Helper()
	xdg, err := os.MkdirTemp("", "rqxdg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(xdg) })
	if err := os.Chmod(xdg, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(d.dir, filepath.Join(xdg, "relayq")); err != nil {
		t.Fatal(err)
	}
	return []string{"XDG_STATE_HOME=" + xdg, "HOME=/nonexistent"}
}

// TestSendmailUnreadableConfig: `relayq sendmail -c CONFIG` run as nobody,
// CONFIG being mode 0640 root:root as the README's install made it (it may
// hold the relay password) → relayq (unix socket) → smtptest relay; then
// with the daemon down → maildrop → relay once it is back. sendmail cannot
// read the file, warns on stderr, goes on with the built-in defaults (which
// lead to the daemon's state directory) and exits 0 both times; both
// messages are delivered. It used to exit 78 (EX_CONFIG) and the message
// was neither queued nor in the maildrop.
func TestSendmailUnreadableConfig(t *testing.T) {
	needRoot(t)
	bin := publicBin(t)
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	openStateDir(t, d)
	if err := os.Chmod(d.config, 0o640); err != nil {
		t.Fatal(err)
	}
	env := ownStateHome(t, d)
	send := func(seq int) (cmdResult, []byte) {
		msg := newMessage(seq, "nobody@example.org", []string{"rcpt@example.net"}, 3)
		return asUserEnv(env, bin, nobody, nobody, nil, msg, "sendmail", "-c", d.config, "rcpt@example.net"), msg
	}
	checkWarned := func(r cmdResult) {
		t.Helper()
		if !strings.Contains(r.stderr, "warning") || !strings.Contains(r.stderr, d.config) || !strings.Contains(r.stderr, "built-in defaults") {
			t.Errorf("sendmail's stderr %q: want a warning naming %s and the built-in defaults", r.stderr, d.config)
		}
	}

	r, body1 := send(1)
	if r.code != 0 {
		t.Fatalf("sendmail as nobody with an unreadable config: %v; want exit 0", r)
	}
	checkWarned(r)
	got := relay.WaitMessages(t, 1, 15*time.Second)
	if !sameMessage(got[0].Body, body1) { // after relayq's Received (stamp_test.go)
		t.Errorf("relay got %q, want the message", got[0].Body)
	}

	if code := d.stop(); code != 0 {
		t.Fatalf("relayq serve exited %d after SIGTERM", code)
	}
	r, body2 := send(2)
	if r.code != 0 || len(maildropFiles(t, d)) != 1 {
		t.Fatalf("sendmail with the daemon down: %v, maildrop %q; want exit 0 and one file", r, maildropFiles(t, d))
	}
	checkWarned(r)
	d.start()
	got = relay.WaitMessages(t, 2, 15*time.Second)
	if !sameMessage(got[1].Body, body2) {
		t.Errorf("relay got %q, want the maildrop message", got[1].Body)
	}
}

// TestServeStateDirNotWritable: `relayq serve` run as nobody with a
// state_dir owned by root (0755) fails, and says which directory and what
// to do (set state_dir, or run it as the directory's owner), not just
// "permission denied".
func TestServeStateDirNotWritable(t *testing.T) {
	needRoot(t)
	bin := publicBin(t)
	d := newDaemon(t, nil)
	if err := os.Chmod(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := asUser(bin, nobody, nobody, nil, nil, "serve", "-c", d.config)
	if r.code == 0 || !strings.Contains(r.stderr, "the state directory is "+d.dir) || !strings.Contains(r.stderr, "set state_dir") {
		t.Errorf("serve as nobody in root's state directory: %v; want a failure naming %s and state_dir", r, d.dir)
	}
}

// TestMailqAnyUser: `relayq mailq` run as nobody, with the config
// unreadable (0640 root) → relayq's mailq socket. As with Postfix, any
// user sees the queue: each message's ID, size, arrival time, sender and
// pending recipients, in text and with --json (sender and recipients as in
// `queue list --json`, the last reply as {code, enhanced, lines}); not the
// submitter. The control socket still refuses nobody (`queue list`: 77).
// mailq used to ask the control socket, so nobody got exit 77.
func TestMailqAnyUser(t *testing.T) {
	needRoot(t)
	bin := publicBin(t)
	d := startDaemon(t, nil)
	openStateDir(t, d)
	if err := os.Chmod(d.config, 0o640); err != nil {
		t.Fatal(err)
	}
	env := ownStateHome(t, d)
	from, to := "cron@example.org", []string{"rcpt@example.net"}
	id := d.submit(t, from, to, newMessage(1, from, to, 3))

	r := asUserEnv(env, bin, nobody, nobody, nil, nil, "mailq", "-c", d.config)
	if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, from) || !strings.Contains(r.stdout, to[0]) {
		t.Errorf("mailq as nobody: %v; want exit 0 and the message listed", r)
	}
	r = asUserEnv(env, bin, nobody, nobody, nil, nil, "mailq", "--json", "-c", d.config)
	var items []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &items); r.code != 0 || err != nil || len(items) != 1 {
		t.Fatalf("mailq --json as nobody: %v (%v); want one message", r, err)
	}
	it := items[0]
	if it["id"] != id || it["from"] != from || it["size"] == nil || it["created"] == nil || it["submitter"] != nil {
		t.Errorf("mailq --json: %v; want id, from, size, created and no submitter", it)
	}
	if r := asUserEnv(env, bin, nobody, nobody, nil, nil, "queue", "list", "-c", d.config); r.code != 77 || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("queue list as nobody: %v; want exit 77, permission denied", r)
	}
}
