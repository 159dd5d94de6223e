//go:build !linux

package queue

// prefetch is Linux's; elsewhere Open's walk reads the file as it goes.
func prefetch(string) {}
