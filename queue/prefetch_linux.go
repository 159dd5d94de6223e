package queue

import (
	"os"

	"golang.org/x/sys/unix"
)

// prefetch reads the file at path into the page cache in file order
// (readahead(2), 8 MiB at a time, which copies nothing out), ahead of
// Open's walk, when it takes at most half the machine's memory. The walk,
// and bbolt's rebuild of its freelist after it, visit pages in key order,
// which in a file that has lived is nowhere near file order: with a cold
// cache each page was a random read (a 300 MB file took 4 s to open on a
// disk that reads 1.4 GB/s in order; 0.4 s with this). posix_fadvise
// WILLNEED of the whole file did not help. Errors are ignored: the walk
// reads whatever is missing.
func prefetch(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil || uint64(fi.Size()) > uint64(si.Totalram)*uint64(si.Unit)/2 {
		return
	}
	const step = 8 << 20
	for off := int64(0); off < fi.Size(); off += step {
		if _, _, errno := unix.Syscall(unix.SYS_READAHEAD, f.Fd(), uintptr(off), step); errno != 0 {
			return
		}
	}
}
