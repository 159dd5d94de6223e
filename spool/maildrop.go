package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"relayq/queue"
)

// The maildrop is where `relayq sendmail` leaves a message when the daemon's
// socket does not answer. One file per message, in a directory the daemon
// owns with mode 01733: every user may create files, nobody but the daemon
// may list them, and the sticky bit keeps users from removing each other's.
// When the submission socket is kept from some users (socket_mode,
// socket_group), the maildrop is too (01730 with the socket's group; see
// MaildropMode).
// Names are random, so a file cannot be found by guessing either.
//
// A file goes through these names:
//
//	tmp.<name>        being written by sendmail; ignored, removed after an hour
//	<name>            complete (fsynced, renamed into place): to import
//	<name>.work       claimed by the daemon's import (renamed, so that a file
//	                  the daemon could not remove is never imported twice)
//	<name>.bad        could not be read as a maildrop file; kept for a human
//
// <name> is the creation time in hex nanoseconds, a dash and 32 random hex
// digits, so a directory listing sorts in order of submission.
//
// The format, version 1: a first line "relayq-maildrop 1"; then one line
// "from <addr>" ("from <>" for the null sender); one "rcpt <addr>" line per
// recipient, followed by its DSN parameters if any (" NOTIFY=SUCCESS,DELAY
// ORCPT=RFC822;xtext"); "smtputf8" if the envelope needs SMTPUTF8; "ret
// FULL|HDRS" and "envid <xtext>" for the DSN request; an empty line; the
// body (CRLF line endings), to the end of the file. The header lines end with
// LF. Who submitted is not in the file: the importer takes the file owner's
// uid, which the submitter cannot forge.
const (
	maildropMagic   = "relayq-maildrop 1"
	maildropTemp    = "tmp."
	maildropWork    = ".work"
	maildropBad     = ".bad"
	maildropTempAge = time.Hour
)

// EnsureMaildrop creates the maildrop directory if needed and gives it mode
// 01733 (set explicitly, whatever the umask): the maildrop of a submission
// socket every user may write to (see EnsureMaildropFor). The parent must
// exist and be searchable by the users who run sendmail.
func EnsureMaildrop(dir string) error {
	return EnsureMaildropFor(dir, defaultSocketMode, -1)
}

// WriteMaildrop stores one message in dir: it writes a temporary file
// (mode 0644, so the daemon can read it), fsyncs it, renames it to its final
// name and makes the rename durable (fsync of the directory, or syncfs(2)
// where the directory cannot be opened). Only then does it return the name.
func WriteMaildrop(dir string, env queue.Envelope, body []byte) (name string, err error) {
	header, err := maildropHeader(env)
	if err != nil {
		return "", err
	}
	return placeMaildropFile(dir, header, body, 0o644)
}

// placeMaildropFile is WriteMaildrop once the header is made, and intake's
// own files too (maildrop_intake.go), with the file's mode perm.
func placeMaildropFile(dir, header string, body []byte, perm os.FileMode) (name string, err error) {
	name = fmt.Sprintf("%016x-%s", time.Now().UnixNano(), randomHex(16))
	tmp := filepath.Join(dir, maildropTemp+name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return "", fmt.Errorf("spool: maildrop: %w", err)
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := writeMaildropFile(f, header, body, perm); err != nil {
		return "", fmt.Errorf("spool: maildrop: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return "", fmt.Errorf("spool: maildrop: %w", err)
	}
	if err := syncDir(dir); err != nil {
		if err := syncFS(f); err != nil {
			return "", fmt.Errorf("spool: maildrop: sync %s: %w", dir, err)
		}
	}
	return name, nil
}

// MaildropRoom returns ErrNoRoom while the file system of the queue at
// queuePath, where the daemon will import the message, has less than
// minFree bytes free: the rule intake follows (queue.Options.MinFree),
// without the free pages inside the queue file, which only the daemon can
// see. The queue's directory is looked at if this user may, else the
// maildrop dir's file system (usually the same). 0 checks nothing.
func MaildropRoom(queuePath, dir string, minFree int64) error {
	if minFree <= 0 {
		return nil
	}
	free, err := queue.FreeSpace(filepath.Dir(queuePath))
	if err != nil {
		free, err = queue.FreeSpace(dir)
	}
	if err != nil {
		return nil // cannot tell; writing the file will
	}
	if free < minFree {
		return fmt.Errorf("spool: maildrop: %w: %d bytes free, below min_free (%d)", ErrNoRoom, free, minFree)
	}
	return nil
}

func writeMaildropFile(f *os.File, header string, body []byte, perm os.FileMode) error {
	// The umask may have taken the read bits away; the daemon needs them.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := io.WriteString(f, header); err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		return err
	}
	return f.Sync()
}

func maildropHeader(env queue.Envelope) (string, error) {
	if env.From != "" {
		if err := checkAddress(env.From); err != nil {
			return "", fmt.Errorf("spool: maildrop: %w: sender %q: %v", ErrBadAddress, env.From, err)
		}
	}
	if len(env.Recipients) == 0 {
		return "", fmt.Errorf("spool: maildrop: %w", ErrNoRecipients)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nfrom <%s>\n", maildropMagic, env.From)
	for i, r := range env.Recipients {
		if err := checkAddress(r); err != nil {
			return "", fmt.Errorf("spool: maildrop: %w: recipient %q: %v", ErrBadAddress, r, err)
		}
		dsn := ""
		if i < len(env.RecipientDSN) {
			if err := checkRecipientDSN(env.RecipientDSN[i]); err != nil {
				return "", fmt.Errorf("spool: maildrop: %w: %v", ErrBadDSN, err)
			}
			dsn = maildropRcptParams(env.RecipientDSN[i])
		}
		fmt.Fprintf(&b, "rcpt <%s>%s\n", r, dsn)
	}
	if env.UTF8 {
		b.WriteString("smtputf8\n")
	}
	if err := checkDSN(env.DSN); err != nil {
		return "", fmt.Errorf("spool: maildrop: %w: %v", ErrBadDSN, err)
	}
	if env.DSN.Return != "" {
		fmt.Fprintf(&b, "ret %s\n", env.DSN.Return)
	}
	if env.DSN.EnvelopeID != "" {
		fmt.Fprintf(&b, "envid %s\n", xtextEncode(env.DSN.EnvelopeID))
	}
	b.WriteString("\n")
	return b.String(), nil
}

// parseMaildrop reads a maildrop file back, and the intake line of one
// intake wrote (maildrop_intake.go; nil if none). The body is normalised
// again (the file may not have come from WriteMaildrop) and refused if it
// holds NUL octets.
func parseMaildrop(data []byte) (env queue.Envelope, body []byte, origin *intakeOrigin, err error) {
	s := string(data)
	first := true
	for {
		line, rest, ok := strings.Cut(s, "\n")
		if !ok {
			return env, nil, nil, errors.New("no end of header")
		}
		s = rest
		if first {
			if line != maildropMagic {
				return env, nil, nil, fmt.Errorf("first line is %.40q, not %q", line, maildropMagic)
			}
			first = false
			continue
		}
		if line == "" {
			break
		}
		if rest, ok := strings.CutPrefix(line, maildropIntakeKey+" "); ok && origin == nil {
			if origin, err = parseIntakeLine(rest); err != nil {
				return env, nil, nil, err
			}
			continue
		}
		if err := parseMaildropLine(&env, line); err != nil {
			return env, nil, nil, err
		}
	}
	if len(env.Recipients) == 0 {
		return env, nil, nil, errors.New("no recipients")
	}
	n, body, err := readNormalized(strings.NewReader(s), 0)
	if err != nil {
		return env, nil, nil, err
	}
	if n.nul {
		return env, nil, nil, errors.New("body contains NUL octets")
	}
	env.EightBit = n.eightBit
	env.UTF8 = env.UTF8 || needsUTF8(env.From, env.Recipients)
	if !slices.ContainsFunc(env.RecipientDSN, func(d queue.RecipientDSN) bool { return !d.IsZero() }) {
		env.RecipientDSN = nil
	}
	return env, body, origin, checkDSN(env.DSN)
}

func parseMaildropLine(env *queue.Envelope, line string) error {
	key, val, _ := strings.Cut(line, " ")
	switch key {
	case "ret":
		env.DSN.Return = val
		return nil
	case "envid":
		id, err := xtextDecode(val)
		env.DSN.EnvelopeID = id
		return err
	case "rcpt":
		// "rcpt <addr> PARAMS": an address holds no space, so it ends at
		// the first "> ".
		if i := strings.Index(val, "> "); i >= 0 {
			d, err := parseMaildropRcptParams(val[i+2:])
			if err != nil {
				return err
			}
			val = val[:i+1]
			env.RecipientDSN = append(env.RecipientDSN, d)
		} else {
			env.RecipientDSN = append(env.RecipientDSN, queue.RecipientDSN{})
		}
	}
	addr, isAddr := strings.CutPrefix(val, "<")
	addr, closed := strings.CutSuffix(addr, ">")
	switch {
	case key == "smtputf8" && val == "":
		env.UTF8 = true
	case key == "from" && isAddr && closed:
		if addr != "" {
			if err := checkAddress(addr); err != nil {
				return fmt.Errorf("sender %q: %v", addr, err)
			}
		}
		env.From = addr
	case key == "rcpt" && isAddr && closed:
		if err := checkAddress(addr); err != nil {
			return fmt.Errorf("recipient %q: %v", addr, err)
		}
		env.Recipients = append(env.Recipients, addr)
	default:
		return fmt.Errorf("unknown line %.60q", line)
	}
	return nil
}

// Maildrop is the daemon's side of the maildrop directory that sendmail
// falls back to when the socket is down.
type Maildrop struct {
	Dir   string
	Queue *queue.Queue
	// MaxSize is max_message_size; a larger file is set aside (*.bad), not
	// read. 0 means no limit.
	MaxSize int64
	// Hostname names this host in the Received header each message gets
	// (stampMessage); "" means os.Hostname().
	Hostname string
	Log      *slog.Logger
	// Intake, if set, applies its policy to every file as to a submission
	// on its socket by the file's owner (maildrop_policy.go):
	// max_recipients, max_message_size and [limits], counted together with
	// the owner's socket submissions.
	Intake *Server
	// Rewriting is applied to every file as intake applies it
	// (rewriting.go); a file with a recipient it refuses is set aside.
	// With an Intake, the Intake's rules (as SetRewriting last set them)
	// are used instead.
	Rewriting Rewriting

	// afterStat, if set, runs between the size check and the read of each
	// file: tests use it to grow a file the way its owner can.
	afterStat func(f *os.File)
	// now is the clock of the retries (maildrop_policy.go); nil: time.Now.
	now func() time.Time

	mu      sync.Mutex // one Import at a time
	waiting map[string]*dropRetry
	logs    logEvery
}

// maildropEnvelopeRoom is what the envelope lines of a maildrop file may
// add to the message itself.
const maildropEnvelopeRoom = 1 << 20

func (m *Maildrop) hostname() string {
	if m.Hostname != "" {
		return m.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

func (m *Maildrop) logger() *slog.Logger {
	if m.Log == nil {
		return slog.Default()
	}
	return m.Log
}

// Import moves every complete file in the directory into the queue: claim it (rename
// to .work), read it, queue.Put, remove it. The removals are made durable
// with one fsync of dir at the end.
//
// A crash after Put and before the removal is on disk leaves the file to be
// imported again: a duplicate, never a loss. A file that cannot be read as a
// maildrop file, or that the intake policy refuses for good, is renamed
// *.bad and logged, never deleted. Temporary files are left alone while
// sendmail may still be writing them, and removed once they are an hour
// old.
//
// Files are independent: one the queue cannot take now (queue full,
// storage error) or whose owner is over a [limits] limit stays claimed and
// is tried again later, with a growing delay, while the others go in; one
// that keeps failing is set aside (maildrop_policy.go). Import returns an
// error only when the directory cannot be read or a queued file cannot be
// removed, or while the queue refuses new mail for lack of room
// (queue.Room): then nothing is claimed or imported.
//
// The submitter recorded is the file owner's uid, Via "maildrop", or for
// a file intake wrote while the queue was not open, the submitter its
// intake line names (maildrop_intake.go).
func (m *Maildrop) Import(ctx context.Context) (imported int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir := m.Dir
	if err := m.Queue.Room(); err != nil {
		// Put would refuse every file (min_free): leave them for later
		// without claiming any, and say it the same way each time.
		return 0, fmt.Errorf("spool: maildrop: %w", queue.ErrFull)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("spool: maildrop: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	defer func() {
		if imported > 0 {
			if serr := syncDir(dir); serr != nil && err == nil {
				err = fmt.Errorf("spool: maildrop: %w", serr)
			}
		}
	}()
	defer m.forgetGone(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return imported, err
		}
		switch {
		case strings.HasPrefix(name, maildropTemp):
			m.removeStaleTemp(name)
		case strings.HasSuffix(name, maildropBad):
		default:
			ok, err := m.importFile(ctx, name)
			if err != nil {
				return imported, err
			}
			if ok {
				imported++
			}
		}
	}
	return imported, nil
}

// PendingMaildrop counts the messages in the maildrop at dir that the
// daemon has yet to import: complete files, and files an import claimed but
// did not finish. Listing the maildrop needs the daemon's user or root.
func PendingMaildrop(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("spool: maildrop: %w", err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, maildropTemp) && !strings.HasSuffix(name, maildropBad) {
			n++
		}
	}
	return n, nil
}

// importFile imports one file; ok reports that it was queued and removed.
// The error is for failures that should stop the import (ctx, the disk).
func (m *Maildrop) importFile(ctx context.Context, name string) (ok bool, err error) {
	dir, q, log := m.Dir, m.Queue, m.logger()
	base := strings.TrimSuffix(name, maildropWork)
	if !m.due(base) {
		return false, nil
	}
	work := filepath.Join(dir, base+maildropWork)
	if name != base+maildropWork {
		if err := os.Rename(filepath.Join(dir, name), work); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				m.logRepeated("claim "+base, slog.LevelError, "maildrop: cannot claim file, left in place", "file", name, "err", err)
			}
			return false, nil
		}
	}
	env, body, origin, counted, ok := m.admitFile(base, work) // maildrop_policy.go
	if !ok {
		return false, nil
	}
	env.ID = q.NewID()
	st := stamp{id: env.ID, hostname: m.hostname(), submitter: env.Submitter, now: time.Now()}
	if origin != nil {
		st.helo, st.with = origin.helo, origin.with
		if !origin.at.IsZero() {
			st.now = origin.at // when intake took it (maildrop_intake.go)
		}
	}
	body = stampMessage(nil, body, st)
	rw := m.Rewriting
	if m.Intake != nil {
		rw = *m.Intake.rewriting.Load()
	}
	switch {
	case origin == nil:
		env, body, err = rw.Apply(env, body)
	case rw.Message != nil:
		// Intake's file: its recipients are those RCPT mapped already.
		env.From, body = rw.Message(env.From, body)
	}
	if err != nil {
		counted(false)
		m.setAside(base, work, err)
		return false, nil
	}
	id, err := q.Put(ctx, env, body)
	counted(err == nil)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		m.retryLater(base, work, err, true)
		return false, nil
	}
	delete(m.waiting, base)
	via := viaMaildrop
	if origin != nil {
		via = origin.sub.Via // counted as the session that took it
	}
	if m.Intake != nil {
		m.Intake.opts.Metrics.accept(via) // metrics.go
	}
	// From here until the directory is synced, a crash imports the file
	// again: a duplicate, not a loss.
	if err := os.Remove(work); err != nil {
		log.Error("maildrop: queued but cannot remove file; it will be imported again", "id", id, "file", base, "err", err)
		return false, fmt.Errorf("spool: maildrop: %w", err)
	}
	log.Info("accepted", "id", id, "via", via, "uid", env.Submitter.UID, "file", base,
		"from", env.From, "rcpts", len(env.Recipients), "size", len(body))
	return true, nil
}

// readFile opens a claimed file without following a symbolic link, checks
// that it is a plain file with one link (so nobody can hard-link a file they
// cannot read into the maildrop and have it mailed), and parses it. A file
// larger than MaxSize (plus room for the envelope lines) is refused before
// it is read, so a full maildrop cannot exhaust the daemon's memory; and
// since its owner can still append to it, the read itself stops one byte
// past that bound, whatever the size was a moment before. Intake's own
// file (the daemon's uid, mode intakeFileMode) is read whole. The submitter
// is the file's owner, Via "maildrop", unless intake wrote the file: then
// it is the one its intake line names (maildrop_intake.go), returned too.
func (m *Maildrop) readFile(path string) (queue.Envelope, []byte, *intakeOrigin, error) {
	maxSize := m.MaxSize
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return queue.Envelope{}, nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return queue.Envelope{}, nil, nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) == os.Geteuid() && fi.Mode().Perm() == intakeFileMode {
		// Intake's own file (maildrop_intake.go; no local user can make a
		// file of the daemon's uid, and sendmail's are 0644) holds what its
		// session took: the recipients RCPT mapped, which an alias can make
		// more than the envelope room.
		maxSize = 0
	}
	switch {
	case !fi.Mode().IsRegular():
		return queue.Envelope{}, nil, nil, errors.New("not a regular file")
	case !ok:
		return queue.Envelope{}, nil, nil, errors.New("no owner")
	case st.Nlink != 1:
		return queue.Envelope{}, nil, nil, fmt.Errorf("file has %d links", st.Nlink)
	case maxSize > 0 && fi.Size() > maxSize+maildropEnvelopeRoom:
		return queue.Envelope{}, nil, nil, fmt.Errorf("file of %d bytes exceeds max_message_size %d", fi.Size(), maxSize)
	}
	if m.afterStat != nil {
		m.afterStat(f)
	}
	var r io.Reader = f
	if maxSize > 0 {
		r = io.LimitReader(f, maxSize+maildropEnvelopeRoom+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return queue.Envelope{}, nil, nil, err
	}
	if maxSize > 0 && int64(len(data)) > maxSize+maildropEnvelopeRoom {
		return queue.Envelope{}, nil, nil, fmt.Errorf("file grew past max_message_size %d while being read", maxSize)
	}
	env, body, origin, err := parseMaildrop(data)
	if err == nil {
		origin, err = trustIntake(origin, int(st.Uid)) // maildrop_intake.go
	}
	if err != nil {
		return env, nil, nil, err
	}
	env.Submitter = queue.Submitter{UID: int(st.Uid), Via: viaMaildrop, User: userName(int(st.Uid))}
	if origin != nil {
		env.Submitter = origin.sub
	}
	return env, body, origin, nil
}

// setAside renames a file that will not be imported to <name>.bad.
func (m *Maildrop) setAside(base, work string, why error) {
	delete(m.waiting, base)
	bad := filepath.Join(m.Dir, base+maildropBad)
	if err := os.Rename(work, bad); err != nil {
		m.logRepeated("set aside "+base, slog.LevelError, "maildrop: file not imported, and cannot set it aside", "file", base, "why", why, "err", err)
		return
	}
	m.logger().Warn("maildrop: file set aside, not imported", "file", base+maildropBad, "why", why)
}

// removeStaleTemp removes a temporary file sendmail left over an hour ago
// (it died while writing; it never reported success for it). One it cannot
// remove (a directory a user made, say) is logged once per interval.
func (m *Maildrop) removeStaleTemp(name string) {
	path := filepath.Join(m.Dir, name)
	fi, err := os.Lstat(path)
	if err != nil || time.Since(fi.ModTime()) < maildropTempAge {
		return
	}
	if err := os.Remove(path); err != nil {
		m.logRepeated("temp "+name, slog.LevelWarn, "maildrop: cannot remove stale temporary file", "file", name, "err", err)
		return
	}
	m.logger().Info("maildrop: removed stale temporary file", "file", name, "age", time.Since(fi.ModTime()).Round(time.Second))
}

// Watch imports every interval (0 means 5s) until ctx is done. Failures
// are logged, once until the next different one.
func (m *Maildrop) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	dir, log := m.Dir, m.logger()
	t := time.NewTicker(interval)
	defer t.Stop()
	var last string
	for {
		_, err := m.Import(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && err.Error() != last:
			log.Error("maildrop import failed; will retry", "dir", dir, "err", err)
			last = err.Error()
		case err == nil:
			last = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
