package spool

import (
	"bufio"
	"bytes"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// Who submitted a message, beyond the uid SO_PEERCRED gives: the user's
// name, looked up when the message comes in (a uid may be renamed or
// reused later), and the systemd unit the submitting process ran in, so
// that `relayq queue list` can say "cron.service" rather than "uid 0", and
// [limits] can hold one unit to its own allowance.

// userName returns the name of uid in the user database (which may be NSS:
// LDAP, sssd), or "" when the uid is unknown or has no entry.
func userName(uid int) string {
	if uid < 0 {
		return ""
	}
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
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
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
	var v1, v2 string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		switch {
		case !ok:
		case id == "0" && controllers == "":
			v2 = path
		case controllers == "name=systemd":
			v1 = path
		}
	}
	path := v2
	if unitIn(path) == "" {
		path = v1
	}
	return unitIn(path)
}

func unitIn(path string) string {
	parts := strings.Split(path, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		for _, suffix := range unitSuffixes {
			if p := parts[i]; len(p) > len(suffix) && strings.HasSuffix(p, suffix) {
				return p
			}
		}
	}
	return ""
}
