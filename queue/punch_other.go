//go:build !linux

package queue

import (
	"errors"
	"os"
)

var errPunchUnsupported = errors.New("giving back the blocks of part of a file is Linux's")

// punchHole is Linux's; elsewhere free pages keep their blocks.
func punchHole(*os.File, int64, int64) error { return errPunchUnsupported }

func allocateRange(*os.File, int64, int64) error { return errPunchUnsupported }
