package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// relayq import-postfix --queue: the messages left in Postfix's queue
// (deferred, active, hold, maildrop) are read from their queue files and
// submitted to relayq as `relayq sendmail` would, each with its sender and
// the recipients Postfix had not yet delivered; a file is removed once
// relayq has the message (sendmail's exit 0), so nothing is sent twice by
// a Postfix installed again. --dry-run lists them. Postfix must be stopped.

// postfixQueues are the queue directories holding whole messages
// (incoming holds files cleanup is still writing).
var postfixQueues = []string{"maildrop", "active", "deferred", "hold"}

// postfixMessage is one message of Postfix's queue.
type postfixMessage struct {
	id      string // the queue file's name, Postfix's queue ID
	path    string
	sender  string   // "" for the null sender
	rcpts   []string // not yet delivered
	content []byte   // header and body, lines ending in "\n"
}

// Postfix queue file record types (src/global/rec_type.h).
const (
	recFrom    = 'S'
	recRcpt    = 'R'
	recMesg    = 'M' // start of the content
	recNorm    = 'N' // a content line
	recCont    = 'L' // a content line continued in the next record
	recXtra    = 'X' // end of the content
	recPointer = 'p' // continue reading at this offset (0: go on)
	recEnd     = 'E'
)

var errNoEnd = errors.New("no end record: the file is incomplete")

// parsePostfixQueueFile reads a queue file's records: a type byte, the
// length in 7-bit groups (low first, high bit set on all but the last),
// the data. Pointer records are followed, as postcat does.
func parsePostfixQueueFile(data []byte) (*postfixMessage, error) {
	m := &postfixMessage{}
	var content bytes.Buffer
	inContent, pos := false, 0
	for steps := 0; steps <= len(data); steps++ {
		typ, rec, next, err := postfixRecord(data, pos)
		if err != nil {
			return nil, err
		}
		pos = next
		switch {
		case typ == recEnd:
			m.content = content.Bytes()
			return m, nil
		case typ == recPointer:
			off, err := strconv.Atoi(strings.TrimSpace(string(rec)))
			if err != nil || off < 0 || off >= len(data) {
				return nil, fmt.Errorf("bad pointer record %q", rec)
			}
			if off > 0 {
				pos = off
			}
		case typ == recMesg:
			inContent = true
		case typ == recXtra:
			inContent = false
		case inContent && typ == recNorm:
			content.Write(rec)
			content.WriteByte('\n')
		case inContent && typ == recCont:
			content.Write(rec)
		case !inContent && typ == recFrom:
			m.sender = string(rec)
		case !inContent && typ == recRcpt:
			m.rcpts = append(m.rcpts, string(rec))
		}
	}
	return nil, errors.New("pointer records loop")
}

// postfixRecord decodes the record at pos.
func postfixRecord(data []byte, pos int) (typ byte, rec []byte, next int, err error) {
	if pos >= len(data) {
		return 0, nil, 0, errNoEnd
	}
	typ, pos = data[pos], pos+1
	n, shift := 0, 0
	for {
		if pos >= len(data) || shift > 28 {
			return 0, nil, 0, errNoEnd
		}
		c := data[pos]
		pos++
		n |= int(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			break
		}
	}
	if pos+n > len(data) {
		return 0, nil, 0, errNoEnd
	}
	return typ, data[pos : pos+n], pos + n, nil
}

// postfixQueueFiles lists the queue files of dir's queues (with their
// hashed subdirectories), by queue ID.
func postfixQueueFiles(dir string) []string {
	var files []string
	for _, q := range postfixQueues {
		filepath.WalkDir(filepath.Join(dir, q), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				files = append(files, path)
			}
			return nil
		})
	}
	sort.Slice(files, func(i, j int) bool { return filepath.Base(files[i]) < filepath.Base(files[j]) })
	return files
}

// postfixRunning tells whether Postfix's master runs (its pid file names a
// live process).
func postfixRunning(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "pid", "master.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	// Postfix leaves master.pid behind when it stops: the number may be
	// another process's by now. Only Postfix's master counts.
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return err != nil || strings.TrimSpace(string(comm)) == "master"
}

// importPostfixQueue submits the messages of Postfix's queue in dir to
// relayq, or lists them with dryRun.
func importPostfixQueue(dir string, dryRun bool, env cmdEnv) int {
	if !dryRun && postfixRunning(dir) {
		fmt.Fprintln(env.Stderr, "relayq import-postfix --queue: Postfix is running: stop it first (postfix stop), or it may deliver the same messages")
		return exitTempFail
	}
	code, n := exitOK, 0
	for _, path := range postfixQueueFiles(dir) {
		n++
		id := filepath.Base(path)
		data, err := os.ReadFile(path)
		var m *postfixMessage
		if err == nil {
			m, err = parsePostfixQueueFile(data)
		}
		if err == nil && len(m.rcpts) == 0 {
			err = errors.New("no recipient left to deliver to")
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v; left in Postfix's queue\n", path, err)
			code = exitDataErr
			continue
		}
		m.id, m.path = id, path
		if c := resubmitPostfixMessage(m, dryRun, env); c != exitOK {
			code = c
		}
	}
	if n == 0 {
		fmt.Fprintf(env.Stdout, "Postfix's queue (%s) is empty\n", dir)
	}
	return code
}

// resubmitPostfixMessage submits m as `relayq sendmail -i -f SENDER --
// RCPT...` would, then removes its queue file.
func resubmitPostfixMessage(m *postfixMessage, dryRun bool, env cmdEnv) int {
	sender := m.sender
	if sender == "" {
		sender = "<>"
	}
	what := fmt.Sprintf("%s: from <%s> to %s, %d bytes", m.id, m.sender, strings.Join(m.rcpts, ", "), len(m.content))
	if dryRun {
		fmt.Fprintln(env.Stdout, what)
		return exitOK
	}
	sub := env
	sub.Stdin = bytes.NewReader(m.content)
	if code := runSendmail(append([]string{"-i", "-f", sender, "--"}, m.rcpts...), sub); code != exitOK {
		fmt.Fprintf(env.Stderr, "%s: relayq sendmail exited %d; left in Postfix's queue\n", what, code)
		return code
	}
	if err := os.Remove(m.path); err != nil {
		fmt.Fprintf(env.Stderr, "%s: submitted, but %v: remove it by hand, or Postfix may send it too\n", what, err)
		return exitIOErr
	}
	fmt.Fprintln(env.Stdout, what+": submitted to relayq, removed from Postfix's queue")
	return exitOK
}
