package queue

import (
	"fmt"
	"syscall"
)

// dontNeed is madvise(addr, size, MADV_DONTNEED).
func dontNeed(addr uintptr, size int64) error {
	if size <= 0 {
		return nil
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(size), syscall.MADV_DONTNEED); errno != 0 {
		return fmt.Errorf("madvise: %w", errno)
	}
	return nil
}
