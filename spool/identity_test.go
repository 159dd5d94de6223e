package spool

import (
	"os"
	"os/user"
	"testing"
)

func TestUnitFromCgroup(t *testing.T) {
	tests := []struct {
		name, cgroup, want string
	}{
		{"cron job (cgroup v2)", "0::/system.slice/cron.service\n", "cron.service"},
		{"login session", "0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"},
		{"user service", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n", "backup.service"},
		{"sub-cgroup of a service", "0::/system.slice/php-fpm.service/pool-www\n", "php-fpm.service"},
		{"cgroup v1 systemd hierarchy", "12:memory:/\n1:name=systemd:/system.slice/cron.service\n0::/\n", "cron.service"},
		{"hybrid: v2 line wins", "1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n", "b.service"},
		{"container root", "0::/\n", ""},
		{"slices only", "0::/user.slice/user-1000.slice\n", ""},
		{"empty", "", ""},
		{"garbage", "no colons here\n:::\n", ""},
		{"bare suffix is no unit", "0::/.service\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unitFromCgroup([]byte(tt.cgroup)); got != tt.want {
				t.Errorf("unitFromCgroup(%q) = %q, want %q", tt.cgroup, got, tt.want)
			}
		})
	}
}

func TestUserName(t *testing.T) {
	if got := userName(-1); got != "" {
		t.Errorf("userName(-1) = %q, want \"\"", got)
	}
	u, err := user.LookupId("0")
	if err != nil {
		t.Skipf("no uid 0 in the user database: %v", err)
	}
	if got := userName(0); got != u.Username {
		t.Errorf("userName(0) = %q, want %q", got, u.Username)
	}
	if got := userName(2147483000); got != "" {
		t.Errorf("userName of an unknown uid = %q, want \"\"", got)
	}
}

func TestUnitOfGonePid(t *testing.T) {
	if got := unitOf(0); got != "" {
		t.Errorf("unitOf(0) = %q", got)
	}
	if got := unitOf(1 << 30); got != "" {
		t.Errorf("unitOf(no such process) = %q", got)
	}
}

// unitOf reads the file whole, as os.ReadFile would, however long it is.
func TestUnitOfReadsTheWholeFile(t *testing.T) {
	path := "/proc/self/cgroup"
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, size := range []int{0, 1, 7, 4096} {
		got, err := readProcFile(path, make([]byte, 0, size))
		if err != nil || string(got) != string(want) {
			t.Errorf("readProcFile(%s, cap %d) = %q, %v; want %q", path, size, got, err, want)
		}
	}
	if got, want := unitOf(os.Getpid()), unitFromCgroup(want); got != want {
		t.Errorf("unitOf(self) = %q, want %q", got, want)
	}
}
