//go:build !linux

package spool

import (
	"errors"
	"os"
)

// syncFS is only implemented on Linux (syncfs(2)).
func syncFS(*os.File) error {
	return errors.New("spool: syncfs is only available on Linux")
}
