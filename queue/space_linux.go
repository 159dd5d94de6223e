package queue

import (
	"os"

	"golang.org/x/sys/unix"
)

// fallocate allocates size bytes of f from the start; with keepSize the
// file's length stays as it is (room ahead of appends).
func fallocate(f *os.File, size int64, keepSize bool) error {
	mode := uint32(0)
	if keepSize {
		mode = unix.FALLOC_FL_KEEP_SIZE
	}
	return unix.Fallocate(int(f.Fd()), mode, 0, size)
}
