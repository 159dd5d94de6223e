package spool

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"relayq/queue"
)

// Intake's own maildrop files: what a session that reaches the end of DATA
// while the queue is not open yet writes (starting.go), so that it can
// answer 250 before the queue is open. The file is a maildrop file like
// sendmail's, with one more header line that says who submitted it and
// how, since the file's owner is the daemon and not the submitter:
//
//	intake via=socket uid=1000 user=alice unit=cron.service helo=host with=ESMTP at=1796644800123456789
//	intake via=tcp uid=-1 addr=127.0.0.1:40312 helo=client.example with=ESMTP at=1796644800123456789
//
// Each value is xtext (dsn.go), so it holds no space or line end; user,
// unit, addr and helo are left out when empty. at is when the session took
// the message (Unix nanoseconds): the time of its Received header, and of
// the Date and Message-ID added when it has none, however long the file
// waits. The import honours the line
// only in a file owned by the daemon's own uid, which no local user can
// create in the maildrop: in a file owned by anyone else it is a forgery
// (a user claiming another's identity), and the file is set aside (*.bad)
// and logged, never imported. The message then gets what a session with
// the queue open would have given it: the submitter recorded as the
// socket's peer (or the TCP address), its Received header (from the HELO
// name and protocol), its [limits] and rewriting.
//
// The recipients and sender are written as the client gave them, before
// rewriting, and the body unstamped: the import stamps it and applies the
// rewriting once, as it does for sendmail's files.

// maildropIntakeKey begins the header line of intake's own files.
const maildropIntakeKey = "intake"

// intakeOrigin is what the intake line records.
type intakeOrigin struct {
	sub  queue.Submitter // Via viaSocket or viaTCP
	helo string
	with string    // "SMTP" or "ESMTP"
	at   time.Time // when the session took it; zero: unknown
}

// line renders o as the intake header line, with its LF.
func (o intakeOrigin) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s via=%s uid=%d", maildropIntakeKey, o.sub.Via, o.sub.UID)
	for _, kv := range [...][2]string{{"user", o.sub.User}, {"unit", o.sub.Unit}, {"addr", o.sub.Addr}, {"helo", o.helo}, {"with", o.with}} {
		if kv[1] != "" {
			b.WriteString(" " + kv[0] + "=" + xtextEncode(kv[1]))
		}
	}
	if !o.at.IsZero() {
		fmt.Fprintf(&b, " at=%d", o.at.UnixNano())
	}
	b.WriteString("\n")
	return b.String()
}

// parseIntakeLine reads what line wrote, after the key and its space.
func parseIntakeLine(s string) (*intakeOrigin, error) {
	o := &intakeOrigin{sub: queue.Submitter{UID: -1}}
	seen := map[string]bool{}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || seen[k] {
			return nil, fmt.Errorf("intake line: bad or repeated field %.40q", f)
		}
		seen[k] = true
		v, err := xtextDecode(v)
		if err != nil {
			return nil, fmt.Errorf("intake line: %s: %v", k, err)
		}
		switch k {
		case "via":
			o.sub.Via = v
		case "uid":
			if o.sub.UID, err = strconv.Atoi(v); err != nil || o.sub.UID < -1 {
				return nil, fmt.Errorf("intake line: bad uid %.20q", v)
			}
		case "user":
			o.sub.User = v
		case "unit":
			o.sub.Unit = v
		case "addr":
			o.sub.Addr = v
		case "helo":
			o.helo = v
		case "with":
			o.with = v
		case "at":
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ns <= 0 {
				return nil, fmt.Errorf("intake line: bad time %.30q", v)
			}
			o.at = time.Unix(0, ns)
		default:
			return nil, fmt.Errorf("intake line: unknown field %.20q", k)
		}
	}
	if o.sub.Via != viaSocket && o.sub.Via != viaTCP {
		return nil, fmt.Errorf("intake line: via %.20q is neither %s nor %s", o.sub.Via, viaSocket, viaTCP)
	}
	if o.with != "" && o.with != "SMTP" && o.with != "ESMTP" {
		return nil, fmt.Errorf("intake line: with %.20q", o.with)
	}
	return o, nil
}

// errForgedIntake is why a file with an intake line that the daemon did
// not write is set aside.
var errForgedIntake = errors.New("an intake line in a file the daemon did not write (its owner is not the daemon's uid)")

// trustIntake returns the origin to record for a file owned by uid owner
// with intake line o (nil: none), or errForgedIntake.
func trustIntake(o *intakeOrigin, owner int) (*intakeOrigin, error) {
	if o == nil {
		return nil, nil
	}
	if owner != os.Geteuid() {
		return nil, fmt.Errorf("%w: owner uid %d claims %s uid %d", errForgedIntake, owner, o.sub.Via, o.sub.UID)
	}
	return o, nil
}

// writeIntakeFile stores one message intake took while the queue was not
// open: env and body as the client gave them, o as who and how. As
// WriteMaildrop does, it writes a temporary file (mode 0600: only the
// daemon reads it), fsyncs it, renames it into place and fsyncs the
// directory before it returns the name.
func writeIntakeFile(dir string, env queue.Envelope, body []byte, o intakeOrigin) (name string, err error) {
	header, err := maildropHeader(env)
	if err != nil {
		return "", err
	}
	// The intake line goes last, before the empty line that ends the header.
	header = strings.TrimSuffix(header, "\n") + o.line() + "\n"
	return placeMaildropFile(dir, header, body, intakeFileMode)
}

// intakeFileMode is the mode of intake's own maildrop files: only the
// daemon reads them (sendmail's are 0644).
const intakeFileMode = 0o600
