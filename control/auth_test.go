package control

import (
	"context"
	"os"
	"slices"
	"syscall"
	"testing"
)

func TestAdminsAllow(t *testing.T) {
	supplementary := map[int][]int{1001: {100, 4242}, 1002: {100}}
	a := admins{self: 999, gid: 4242, groups: func(p peer) []int { return supplementary[p.uid] }}
	noGroup := admins{self: 999, gid: -1, groups: a.groups}
	tests := []struct {
		name string
		a    admins
		p    peer
		want bool
	}{
		{"root", a, peer{uid: 0, gid: 0}, true},
		{"the daemon's user", a, peer{uid: 999, gid: 999}, true},
		{"primary group is the admin group", a, peer{uid: 1003, gid: 4242}, true},
		{"supplementary group is the admin group", a, peer{uid: 1001, gid: 1001}, true},
		{"in other groups only", a, peer{uid: 1002, gid: 1002}, false},
		{"nobody", a, peer{uid: 65534, gid: 65534}, false},
		{"unknown peer", a, peer{uid: -1, gid: -1}, false},
		{"no admin group: a member of 4242 is nobody special", noGroup, peer{uid: 1001, gid: 4242}, false},
		{"no admin group: root still", noGroup, peer{uid: 0, gid: 0}, true},
	}
	for _, tt := range tests {
		if got := tt.a.allow(tt.p); got != tt.want {
			t.Errorf("%s: allow(%+v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestParseGroups(t *testing.T) {
	status := "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \nNgid:\t0\n"
	got, err := parseGroups([]byte(status))
	if err != nil || !slices.Equal(got, []int{4, 24, 27, 1000}) {
		t.Errorf("parseGroups = %v, %v", got, err)
	}
	if got, err := parseGroups([]byte("Name:\tx\nGroups:\t\n")); err != nil || len(got) != 0 {
		t.Errorf("no groups: %v, %v", got, err)
	}
	if _, err := parseGroups([]byte("Name:\tx\n")); err == nil {
		t.Error("no Groups: line: want an error")
	}
	if _, err := parseGroups([]byte("Groups:\t1 x\n")); err == nil {
		t.Error("a bad gid: want an error")
	}
}

// TestListenWithAdminGroup: the socket gets the admin group and mode 0660,
// and the server reads the peer's credentials (here: root, this process).
func TestListenWithAdminGroup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("giving the socket to another group needs root")
	}
	q, dir := newTestQueue(t)
	sock := serveTest(t, dir, Options{Queue: q, AdminGID: 4242})
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Gid != 4242 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket group %d mode %o, want 4242 and 0660", st.Gid, fi.Mode().Perm())
	}
	if _, err := Call(context.Background(), sock, Request{Op: OpStatus}); err != nil {
		t.Errorf("root refused: %v", err)
	}
}
