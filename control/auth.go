package control

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"relayq/conncap"
)

// Who may use the control socket. The socket's mode keeps other users from
// connecting at all (0600, or 0660 with the admin group); every connection
// is checked again with SO_PEERCRED, so that a socket whose mode an
// administrator loosened by hand still admits only:
//
//   - root;
//   - the daemon's own user;
//   - members of Options.AdminGID: the peer's primary group (SO_PEERCRED),
//     or one of its supplementary groups, read from /proc/PID/status of the
//     peer (the groups the process really has, which `newgrp`, `sg` or
//     systemd's SupplementaryGroups= change), or from the group database
//     when /proc hides the process (hidepid).
//
// Reading and changing the queue are allowed alike, for now.

// peer is the process at the other end of a control connection.
type peer struct {
	uid, gid, pid int
}

func peerOf(c net.Conn) (peer, error) {
	if cc, ok := c.(*conncap.Conn); ok {
		c = cc.Conn
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{uid: -1, gid: -1}, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{uid: -1, gid: -1}, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{uid: -1, gid: -1}, err
	}
	if credErr != nil {
		return peer{uid: -1, gid: -1}, credErr
	}
	return peer{uid: int(cred.Uid), gid: int(cred.Gid), pid: int(cred.Pid)}, nil
}

// admins decides who is an administrator.
type admins struct {
	self int // the daemon's uid
	gid  int // the admin group; -1 for none
	// groups returns the supplementary groups of a peer (procGroups,
	// falling back to dbGroups).
	groups func(p peer) []int
}

func (a admins) allow(p peer) bool {
	switch {
	case p.uid < 0:
		return false
	case p.uid == 0, p.uid == a.self:
		return true
	case a.gid < 0:
		return false
	case p.gid == a.gid:
		return true
	}
	return slices.Contains(a.groups(p), a.gid)
}

// peerGroups is the supplementary groups of p's process, or of its user in
// the group database when the process cannot be read.
func peerGroups(p peer) []int {
	if p.pid > 0 {
		if data, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/status"); err == nil {
			if groups, err := parseGroups(data); err == nil {
				return groups
			}
		}
	}
	return dbGroups(p.uid)
}

// parseGroups reads the "Groups:" line of a /proc/PID/status file.
func parseGroups(status []byte) ([]int, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var groups []int
		for _, f := range strings.Fields(rest) {
			g, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("Groups: %q is not a gid", f)
			}
			groups = append(groups, g)
		}
		return groups, nil
	}
	return nil, errors.New("no Groups: line")
}

// dbGroups is the groups uid belongs to in the group database.
func dbGroups(uid int) []int {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil
	}
	var out []int
	for _, id := range ids {
		if g, err := strconv.Atoi(id); err == nil {
			out = append(out, g)
		}
	}
	return out
}
