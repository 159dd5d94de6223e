package spool

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// userNames is the daemon's one cache of uid → user name (userName). It is
// the process's, as the C library's own caches are: the socket's sessions
// and the maildrop import ask it alike.
var userNames = newNameCache(lookupUserName, passwdStamp)

// How long a name is believed, and how many uids are remembered. A name
// read from the user database can be out of date in two ways, and each is
// bounded:
//   - /etc/passwd changed (useradd, usermod -l, userdel): every name is
//     forgotten the moment the file's inode, size or modification time
//     differs, so the next connection asks again (one stat per lookup);
//   - a directory service (LDAP, sssd) changed its answer: the old one is
//     used for at most nameTTL. nscd, where it runs, keeps it 600 s.
//
// What a stale name would do: it is recorded with the message (`relayq
// queue list`, the Received header's "from user NAME") and a [limits]
// "user NAME" key counts the message against it; the uid, which is what
// [limits] "uid N" and every permission check use, is never cached.
const (
	nameTTL    = 2 * time.Second
	namesCap   = 1024
	passwdPath = "/etc/passwd"
)

// fileStamp tells one version of a file from another; the zero value
// stands for a file that could not be read.
type fileStamp struct {
	ino, size uint64
	mtime     int64
}

// nameCache remembers lookups for nameTTL while stamp() stays the same.
type nameCache struct {
	lookup func(uid int) string
	stamp  func() fileStamp
	now    func() time.Time

	mu      sync.Mutex
	seen    fileStamp // stamp() when entries were filled
	entries map[int]cachedName
}

type cachedName struct {
	name    string // "" for a uid with no entry: a miss is remembered too
	expires time.Time
}

func newNameCache(lookup func(int) string, stamp func() fileStamp) *nameCache {
	return &nameCache{lookup: lookup, stamp: stamp, now: time.Now, entries: make(map[int]cachedName)}
}

// name returns uid's name, from the cache when the answer is fresh. The
// lookup runs outside the lock, so a slow directory holds up no other uid.
func (c *nameCache) name(uid int) string {
	stamp, now := c.stamp(), c.now()
	c.mu.Lock()
	if stamp != c.seen {
		clear(c.entries)
		c.seen = stamp
	}
	e, ok := c.entries[uid]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.name
	}
	name := c.lookup(uid)
	c.mu.Lock()
	if c.seen == stamp { // else the file changed during the lookup: keep nothing
		if len(c.entries) >= namesCap {
			clear(c.entries)
		}
		c.entries[uid] = cachedName{name: name, expires: now.Add(nameTTL)}
	}
	c.mu.Unlock()
	return name
}

// passwdStamp says which /etc/passwd is in place: its inode (the tools
// that edit it write a new file and rename it over the old one), size and
// modification time.
func passwdStamp() fileStamp {
	fi, err := os.Stat(passwdPath)
	if err != nil {
		return fileStamp{}
	}
	stamp := fileStamp{size: uint64(fi.Size()), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		stamp.ino = uint64(st.Ino)
	}
	return stamp
}
