package spool

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the whole file system f lives on (syncfs(2)), directory
// entries included. WriteMaildrop uses it when it may not open the maildrop
// directory to fsync it: the directory is 01733, writable but not readable
// by the users who run sendmail.
func syncFS(f *os.File) error {
	return unix.Syncfs(int(f.Fd()))
}
