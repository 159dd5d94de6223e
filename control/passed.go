package control

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// A request on the control socket may come with one open file (its
// descriptor passed with SCM_RIGHTS in the same message as the request's
// first bytes): OpBackup writes the copy into it. The file is the
// client's to create, so the daemon never opens a path on a client's
// behalf.

// maxPassed is how many descriptors the daemon makes room for; the kernel
// closes any beyond them, and readPassed closes every one it gets when
// more than one came.
const maxPassed = 4

// readPassed reads the first bytes of a request from c together with any
// descriptor passed with them. It returns a reader of the whole request
// and the one file that came with it, or nil.
func readPassed(c net.Conn) (io.Reader, *os.File) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return c, nil
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*maxPassed))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	var fds []int
	if oobn > 0 {
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for i := range msgs {
			got, err := unix.ParseUnixRights(&msgs[i])
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	var file *os.File
	if len(fds) == 1 {
		file = os.NewFile(uintptr(fds[0]), "passed file")
	} else {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	first := bytes.NewReader(buf[:n])
	if err != nil {
		return io.MultiReader(first, errReader{err}), file
	}
	return io.MultiReader(first, c), file
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// send writes req to c, with f's descriptor alongside when f is not nil.
func send(c net.Conn, req Request, f *os.File) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if f == nil {
		_, err = c.Write(b)
		return err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return os.ErrInvalid
	}
	n, _, err := uc.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil)
	if err == nil && n < len(b) {
		_, err = c.Write(b[n:])
	}
	return err
}
