package queue

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// errPunchUnsupported: the file system cannot give back the blocks of part
// of a file.
var errPunchUnsupported = errors.New("the file system cannot punch holes")

// punchHole gives the disk blocks of size bytes of f at off back to the
// file system; the file keeps its length, and the range reads as zeros
// until written again.
func punchHole(f *os.File, off, size int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return errPunchUnsupported
	}
	return err
}

// allocateRange gives size bytes of f at off disk blocks where they have
// none.
func allocateRange(f *os.File, off, size int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, size)
}
