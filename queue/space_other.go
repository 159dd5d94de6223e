//go:build !linux

package queue

import (
	"errors"
	"os"
)

// fallocate is Linux's; elsewhere the reserve is written out instead and
// the journal gets no room ahead.
func fallocate(*os.File, int64, bool) error { return errors.ErrUnsupported }
