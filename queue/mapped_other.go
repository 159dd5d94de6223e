//go:build !linux

package queue

// dontNeed does nothing where relayq does not know how to release mapped
// pages; they then count in the resident set until the kernel needs them.
func dontNeed(addr uintptr, size int64) error { return nil }
