package main

import (
	"bufio"
	"bytes"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// relayq-sendmail is built without cgo (packaging/build-deb.sh): a
// dynamically linked program with the C runtime starts about 0.7 ms
// slower, and sendmail starts once per message. Without cgo, Go's os/user
// reads /etc/passwd and /etc/group itself, where the C library asks NSS
// (nsswitch.conf: sssd, LDAP, systemd's dynamic users). sendmail looks up
// its own user, for the default sender (cmd/internal/sendmail.LoginName)
// and, with $HOME unset, for the config's state directory; the config
// looks up socket_group and admin_group. So that every user gets exactly
// what `relayq sendmail`, which has cgo, gives, relayq-sendmail relies on
// those lookups only when the files are what NSS reads for this user
// (answerFor), and hands the call to relayq otherwise (main.go), as it
// does when the config fails to load (a group only NSS knows). It asks
// only when the call needs an answer (sendmail.Modes.UserDB): with -f and
// $HOME set, and no group named in the config, nothing is looked up, and
// reading the three files would be a cost at every message for nothing.

// userFiles are the files the C library reads for the user database, and
// Go's os/user lookup to check against them.
type userFiles struct {
	nsswitch, passwd string
	nscdSockets      []string
	lookupID         func(uid string) (*user.User, error)
}

var systemUserFiles = userFiles{
	nsswitch:    "/etc/nsswitch.conf",
	passwd:      "/etc/passwd",
	nscdSockets: []string{"/run/nscd/socket", "/var/run/nscd/socket"},
	lookupID:    user.LookupId,
}

// answerFor reports whether Go's os/user, reading /etc/passwd, gives for
// uid the entry the C library would: nsswitch.conf asks "files" first for
// passwd and group (and no action makes a found entry wait for the next
// source), no nscd answers in place of the files, /etc/passwd has no NIS
// compat lines (+, -), its first line for uid is a plain entry, and
// os/user finds that same entry. Any doubt is a no: handing over costs an
// exec, a wrong sender is a wrong message.
func (f userFiles) answerFor(uid int) bool {
	if !f.filesFirst("passwd", "group") {
		return false
	}
	for _, s := range f.nscdSockets {
		if _, err := os.Lstat(s); err == nil {
			return false
		}
	}
	name, home, ok := f.passwdEntry(uid)
	if !ok {
		return false
	}
	u, err := f.lookupID(strconv.Itoa(uid))
	return err == nil && u.Username == name && u.HomeDir == home
}

// filesFirst reports whether nsswitch.conf's line for each database
// begins with the source "files", not followed by an action on SUCCESS
// ([SUCCESS=continue] or merge would add a later source's answer).
func (f userFiles) filesFirst(databases ...string) bool {
	data, err := os.ReadFile(f.nsswitch)
	if err != nil {
		return false // the C library's built-in default is not "files" alone
	}
	found := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		db, sources, ok := strings.Cut(line, ":")
		db = strings.TrimSpace(db)
		if !ok || !slices.Contains(databases, db) {
			continue
		}
		if found[db] {
			return false // named twice: which line the C library takes is not ours to guess
		}
		found[db] = true
		w := strings.Fields(sources)
		if len(w) == 0 || w[0] != "files" || len(w) > 1 && strings.HasPrefix(w[1], "[") && strings.Contains(strings.ToUpper(w[1]), "SUCCESS") {
			return false
		}
	}
	return len(found) == len(databases) && sc.Err() == nil
}

// passwdEntry is the first line of /etc/passwd for uid, read as the C
// library reads it (the uid a decimal number): its name and home. ok is
// false when there is none, when a line before it is a NIS compat entry,
// or when it is not a plain entry both the C library and Go's os/user take
// (seven fields, a name, the uid written as Go writes it, not "01000", a
// numeric gid).
func (f userFiles) passwdEntry(uid int) (name, home string, ok bool) {
	data, err := os.ReadFile(f.passwd)
	if err != nil {
		return "", "", false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			return "", "", false
		}
		field := strings.Split(line, ":")
		if len(field) < 3 {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(field[2]), 10, 32); err != nil || n != uint64(uid) {
			continue
		}
		if len(field) != 7 || field[0] == "" || field[2] != strconv.Itoa(uid) {
			return "", "", false
		}
		if _, err := strconv.ParseUint(field[3], 10, 32); err != nil {
			return "", "", false
		}
		return field[0], field[5], true
	}
	return "", "", false
}
