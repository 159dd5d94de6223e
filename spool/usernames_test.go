package spool

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeUserDB is a user database whose names and /etc/passwd stamp the test
// changes, counting the lookups that reach it.
type fakeUserDB struct {
	mu      sync.Mutex
	names   map[int]string
	stamp   fileStamp
	lookups int
	clock   time.Time
}

func (db *fakeUserDB) cache() *nameCache {
	c := newNameCache(db.lookup, func() fileStamp { db.mu.Lock(); defer db.mu.Unlock(); return db.stamp })
	c.now = func() time.Time { db.mu.Lock(); defer db.mu.Unlock(); return db.clock }
	return c
}

func (db *fakeUserDB) lookup(uid int) string {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.lookups++
	return db.names[uid]
}

func (db *fakeUserDB) set(f func()) { db.mu.Lock(); defer db.mu.Unlock(); f() }

// A user renamed in /etc/passwd (usermod -l writes a new file) is seen by
// the next submission; a directory service's rename within nameTTL.
func TestNameCacheFollowsRenames(t *testing.T) {
	db := &fakeUserDB{names: map[int]string{1000: "alice"}, stamp: fileStamp{ino: 1}, clock: time.Unix(1e9, 0)}
	c := db.cache()
	for range 3 {
		if got := c.name(1000); got != "alice" {
			t.Fatalf("name(1000) = %q, want alice", got)
		}
	}
	if db.lookups != 1 {
		t.Errorf("3 calls within the TTL made %d lookups, want 1", db.lookups)
	}

	db.set(func() { db.names[1000], db.stamp = "alicia", fileStamp{ino: 2} })
	if got := c.name(1000); got != "alicia" {
		t.Errorf("after /etc/passwd changed: name(1000) = %q, want alicia at once", got)
	}

	// LDAP renames: the file stays the same.
	db.set(func() { db.names[1000] = "ally"; db.clock = db.clock.Add(nameTTL - time.Millisecond) })
	if got := c.name(1000); got != "alicia" {
		t.Errorf("within the TTL: name(1000) = %q, want the cached alicia", got)
	}
	db.set(func() { db.clock = db.clock.Add(time.Millisecond) })
	if got := c.name(1000); got != "ally" {
		t.Errorf("after the TTL: name(1000) = %q, want ally", got)
	}
}

// An unknown uid is remembered as unknown, and a user added for it
// (useradd changes /etc/passwd) is found by the next lookup.
func TestNameCacheNewUser(t *testing.T) {
	db := &fakeUserDB{names: map[int]string{}, stamp: fileStamp{ino: 1}, clock: time.Unix(1e9, 0)}
	c := db.cache()
	if got := c.name(1001); got != "" {
		t.Fatalf("name of an unknown uid = %q", got)
	}
	c.name(1001)
	if db.lookups != 1 {
		t.Errorf("a miss looked up %d times, want 1", db.lookups)
	}
	db.set(func() { db.names[1001], db.stamp = "bob", fileStamp{ino: 1, size: 40} })
	if got := c.name(1001); got != "bob" {
		t.Errorf("after useradd: name(1001) = %q, want bob", got)
	}
}

// The cache holds at most namesCap uids, and answers right past that.
func TestNameCacheBounded(t *testing.T) {
	db := &fakeUserDB{names: map[int]string{}, clock: time.Unix(1e9, 0)}
	for uid := range 3 * namesCap {
		db.names[uid] = fmt.Sprint("u", uid)
	}
	c := db.cache()
	for uid := range 3 * namesCap {
		if got, want := c.name(uid), db.names[uid]; got != want {
			t.Fatalf("name(%d) = %q, want %q", uid, got, want)
		}
		if len(c.entries) > namesCap {
			t.Fatalf("%d entries cached, want at most %d", len(c.entries), namesCap)
		}
	}
}

func TestPasswdStampMovesWithTheFile(t *testing.T) {
	if _, err := os.Stat(passwdPath); err != nil {
		t.Fatalf("%s: %v", passwdPath, err)
	}
	if passwdStamp() == (fileStamp{}) {
		t.Errorf("passwdStamp() of an existing %s is the zero stamp", passwdPath)
	}
	if passwdStamp() != passwdStamp() {
		t.Errorf("passwdStamp() differs between two calls on an unchanged file")
	}
}

// The daemon's cache answers as the user database does, for this process's
// uid and another.
func TestUserNameMatchesUserDatabase(t *testing.T) {
	for _, uid := range []int{os.Getuid(), 0, 65534} {
		want := ""
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			want = u.Username
		}
		for range 2 {
			if got := userName(uid); got != want {
				t.Errorf("userName(%d) = %q, want %q", uid, got, want)
			}
		}
	}
}

// BenchmarkUserName is a connection's lookup of its submitter's name once
// the cache holds it: one stat of /etc/passwd and no lookup. The uid is
// nobody's, not this process's, which os/user answers from its own cache.
// Before the cache (cgo, glibc): 10.7 µs, 1248 B and 10 allocs a call.
func BenchmarkUserName(b *testing.B) {
	uid := 65534
	userName(uid)
	b.ReportAllocs()
	for b.Loop() {
		userName(uid)
	}
}

// BenchmarkUnitOf is the read of a connection's /proc/PID/cgroup. With
// os.ReadFile and bufio.Scanner: 32.9 µs, 6168 B and 22 allocs.
func BenchmarkUnitOf(b *testing.B) {
	pid := os.Getpid()
	b.ReportAllocs()
	for b.Loop() {
		unitOf(pid)
	}
}
