package spool

import (
	"bytes"
	"os/user"
	"strconv"
)

// Who submitted a message, beyond the uid SO_PEERCRED gives: the user's
// name, looked up when the message comes in (a uid may be renamed or
// reused later), and the systemd unit the submitting process ran in, so
// that `relayq queue list` can say "cron.service" rather than "uid 0", and
// [limits] can hold one unit to its own allowance.

// userName returns the name of uid in the user database (which may be NSS:
// LDAP, sssd), or "" when the uid is unknown or has no entry. Answers come
// from userNames (usernames.go): a lookup through the C library costs a
// connection ~15 system calls, and a burst of cron jobs or a script's
// loop submits as the same uid again and again.
func userName(uid int) string {
	if uid < 0 {
		return ""
	}
	return userNames.name(uid)
}

// lookupUserName asks the user database itself, uncached.
func lookupUserName(uid int) string {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return ""
	}
	return u.Username
}

// unitOf returns the systemd unit process pid runs in, read from
// /proc/PID/cgroup; "" when pid is 0 (not visible from here), the process
// is gone, /proc hides it (hidepid, ProtectProc=) or it is in no unit (a
// container's root cgroup).
func unitOf(pid int) string {
	if pid <= 0 {
		return ""
	}
	var buf [4096]byte
	data, err := readProcFile("/proc/"+strconv.Itoa(pid)+"/cgroup", buf[:0])
	if err != nil {
		return ""
	}
	return unitFromCgroup(data)
}

// unitSuffixes are the unit types that hold processes.
var unitSuffixes = []string{".service", ".scope", ".socket", ".mount", ".swap"}

// unitFromCgroup finds the unit in the contents of a /proc/PID/cgroup file:
// the innermost path component that names a unit, in the cgroup v2 line
// ("0::/system.slice/cron.service") or else the v1 systemd hierarchy
// ("1:name=systemd:/system.slice/cron.service"). A user's own service
// ("…/user@1000.service/app.slice/backup.service") gives that service.
func unitFromCgroup(data []byte) string {
	var v1, v2 []byte
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		id, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		controllers, path, ok := bytes.Cut(rest, []byte(":"))
		switch {
		case !ok:
		case string(id) == "0" && len(controllers) == 0:
			v2 = path
		case string(controllers) == "name=systemd":
			v1 = path
		}
	}
	if unit := unitIn(v2); unit != "" {
		return unit
	}
	return unitIn(v1)
}

// unitIn returns the innermost component of a cgroup path that names a
// unit, or "".
func unitIn(path []byte) string {
	for len(path) > 0 {
		var p []byte
		if i := bytes.LastIndexByte(path, '/'); i >= 0 {
			path, p = path[:i], path[i+1:]
		} else {
			path, p = nil, path
		}
		for _, suffix := range unitSuffixes {
			if len(p) > len(suffix) && bytes.HasSuffix(p, []byte(suffix)) {
				return string(p)
			}
		}
	}
	return ""
}
