package main

import (
	"os"
	"os/user"
	"path/filepath"
	"testing"
)

// TestUserFilesAnswer: relayq-sendmail answers for a user itself only when
// /etc/passwd is what the C library reads for it, first; every doubt sends
// the call to relayq (cgo, NSS).
func TestUserFilesAnswer(t *testing.T) {
	const (
		nsswitch = "passwd: files systemd\ngroup: files systemd\nhosts: files dns\n"
		passwd   = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
	)
	goFinds := func(uid string) (*user.User, error) { // as os/user reads the passwd written below
		if uid == "1000" {
			return &user.User{Uid: uid, Username: "alice", HomeDir: "/home/alice"}, nil
		}
		return nil, user.UnknownUserIdError(0)
	}
	tests := []struct {
		name, nsswitch, passwd string
		nscd                   bool
		lookupID               func(string) (*user.User, error)
		uid                    int
		want                   bool
	}{
		{name: "files first", want: true},
		{name: "files first, then an action on NOTFOUND", nsswitch: "passwd: files [NOTFOUND=return] sss\ngroup: files\n", want: true},
		{name: "comments and spaces", nsswitch: "# passwd: sss\n  passwd:   files  # then nothing\ngroup:files\n", want: true},
		{name: "not in /etc/passwd (NSS only)", uid: 1001},
		{name: "NSS before files", nsswitch: "passwd: sss files\ngroup: files\n"},
		{name: "groups from NSS first", nsswitch: "passwd: files\ngroup: ldap files\n"},
		{name: "a found entry waits for the next source", nsswitch: "passwd: files [SUCCESS=continue] ldap\ngroup: files\n"},
		{name: "passwd named twice", nsswitch: nsswitch + "passwd: ldap\n"},
		{name: "no passwd line (the C library's default)", nsswitch: "group: files\n"},
		{name: "no nsswitch.conf", nsswitch: "-"},
		{name: "nscd caches the database", nscd: true},
		{name: "NIS compat line", passwd: "+::::::\n" + passwd},
		{name: "uid written another way", passwd: "alice:x:01000:1000:Alice:/home/alice:/bin/sh\n"},
		{name: "first entry for the uid is short", passwd: "alias:x:1000:1000:/home/alias\n" + passwd},
		{name: "os/user finds another entry", lookupID: func(string) (*user.User, error) {
			return &user.User{Username: "alice", HomeDir: "/elsewhere"}, nil
		}},
		{name: "os/user finds none", lookupID: func(string) (*user.User, error) { return nil, user.UnknownUserIdError(1000) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := userFiles{
				nsswitch:    filepath.Join(dir, "nsswitch.conf"),
				passwd:      filepath.Join(dir, "passwd"),
				nscdSockets: []string{filepath.Join(dir, "nscd.socket")},
				lookupID:    goFinds,
			}
			write := func(path, data, dflt string) {
				if data == "" {
					data = dflt
				}
				if data == "-" {
					return
				}
				if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(f.nsswitch, tt.nsswitch, nsswitch)
			write(f.passwd, tt.passwd, passwd)
			if tt.nscd {
				write(f.nscdSockets[0], "socket", "")
			}
			if tt.lookupID != nil {
				f.lookupID = tt.lookupID
			}
			uid := tt.uid
			if uid == 0 {
				uid = 1000
			}
			if got := f.answerFor(uid); got != tt.want {
				t.Errorf("answerFor(%d) = %v, want %v", uid, got, tt.want)
			}
		})
	}
}
