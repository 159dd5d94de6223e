package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// TestSendmailUserFromNSS: relayq-sendmail (built without cgo, as the
// package ships it) and `relayq sendmail` (cgo: the C library's NSS) run
// as users the user database knows in different ways → relayq (unix
// socket) → smtptest relay. Without -f, the envelope sender and the From
// field sendmail adds name the user, and both commands name the same one;
// $LOGNAME (set to another name) wins only where the database has none,
// as before:
//   - nobody (65534), in /etc/passwd: nobody;
//   - uid 4243, only in NSS (a systemd user record in /run/userdb, which
//     nss-systemd reads; nsswitch.conf: "passwd: files systemd"): nssonly.
//     Go's os/user without cgo cannot see it, and would take $USER;
//     relayq-sendmail hands the call to relayq;
//   - uid 4244, in no database: $LOGNAME.
func TestSendmailUserFromNSS(t *testing.T) {
	needRoot(t)
	addUserRecord(t, "relayq-nssonly", 4243)
	dir := filepath.Dir(publicBin(t))
	copyFile(t, sendmailBin, filepath.Join(dir, "relayq-sendmail")) // debpkg_test.go
	if err := os.Chmod(filepath.Join(dir, "relayq-sendmail"), 0o755); err != nil {
		t.Fatal(err)
	}
	relay := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, relay)
	openStateDir(t, d)

	env := []string{"LOGNAME=mallory", "USER=mallory", "HOME=/nonexistent"}
	seq := 0
	for _, u := range []struct {
		uid  int
		want string
	}{{nobody, "nobody"}, {4243, "relayq-nssonly"}, {4244, "mallory"}} {
		for _, cmd := range [][]string{{"relayq-sendmail"}, {"relayq", "sendmail"}} {
			seq++
			msg := []byte("Subject: " + strconv.Itoa(seq) + "\r\n\r\nx\r\n")
			args := append(cmd[1:], "-c", d.config, "rcpt@example.net")
			if r := asUserEnv(env, filepath.Join(dir, cmd[0]), u.uid, u.uid, nil, msg, args...); r.code != 0 {
				t.Fatalf("%s as uid %d: %v", strings.Join(cmd, " "), u.uid, r)
			}
			m := relay.WaitMessages(t, seq, 15*time.Second)[seq-1]
			local, _, _ := strings.Cut(m.From, "@")
			if local != u.want || !strings.Contains(string(m.Body), "\r\nFrom: <"+m.From+">\r\n") {
				t.Errorf("%s as uid %d: sender %q, From field in %q; want %s@…, and the same in From", strings.Join(cmd, " "), u.uid, m.From, m.Body, u.want)
			}
		}
	}
}

// addUserRecord makes uid a user only NSS knows: a JSON user record in
// /run/userdb, which nss-systemd reads (no daemon needed), removed at the
// end of the test. It fails the test when getent does not then find it.
func addUserRecord(t *testing.T, name string, uid int) {
	t.Helper()
	if _, err := os.Stat("/run/userdb"); os.IsNotExist(err) {
		if err := os.Mkdir("/run/userdb", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/userdb") })
	}
	record := filepath.Join("/run/userdb", name+".user")
	link := filepath.Join("/run/userdb", strconv.Itoa(uid)+".user")
	t.Cleanup(func() { os.Remove(link); os.Remove(record) })
	json := `{"userName":"` + name + `","uid":` + strconv.Itoa(uid) + `,"gid":` + strconv.Itoa(uid) +
		`,"homeDirectory":"/nonexistent","shell":"/bin/sh","disposition":"regular"}`
	if err := os.WriteFile(record, []byte(json), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(record), link); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("getent", "passwd", strconv.Itoa(uid)).Output()
	if err != nil || !strings.HasPrefix(string(out), name+":") {
		t.Fatalf("getent passwd %d: %q, %v; want the user record in /run/userdb (needs libnss-systemd and \"systemd\" in nsswitch.conf's passwd line)", uid, out, err)
	}
	if data, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(data), name+":") {
		t.Fatalf("/etc/passwd has %s: the test needs a user only NSS knows", name)
	}
}
