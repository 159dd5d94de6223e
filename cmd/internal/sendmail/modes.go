package sendmail

import (
	"fmt"
	"strings"
)

// sendmailMode is what a sendmail command line asks for besides
// submitting a message: Postfix's sendmail lists the queue (-bp, as mailq),
// flushes it (-q, as postqueue -f), speaks SMTP on standard input and
// output (-bs) and rebuilds the aliases database (-bi, -I, as newaliases).
type sendmailMode int

const (
	modeSubmit  sendmailMode = iota // -bm, the default
	modeList                        // -bp
	modeFlush                       // -q
	modeSMTP                        // -bs
	modeAliases                     // -bi, -I
)

// bMode applies -bX: -bm submits (the default), -bp lists the queue, -bs
// is an SMTP session, -bi rebuilds the aliases.
func (a *sendmailArgs) bMode(val string) error {
	switch val {
	case "m":
		a.mode = modeSubmit
	case "p":
		a.mode = modeList
	case "s":
		a.mode = modeSMTP
	case "i":
		a.mode = modeAliases
	default:
		return fmt.Errorf("-b%s is not supported: relayq's sendmail submits mail (-bm, or -bs for SMTP on standard input), lists the queue (-bp) and takes -bi", val)
	}
	return nil
}

// queueRun applies -q[ARG]: -q alone flushes the queue; -q with an
// interval (-q30m) is ignored, as Postfix ignores it (it is for a sendmail
// daemon's queue runs); -qR, -qS and -qI (a queue run for some sites,
// senders or IDs) are refused.
func (a *sendmailArgs) queueRun(val string) error {
	switch {
	case val == "":
		a.mode = modeFlush
		return nil
	case strings.Trim(val, "0123456789smhdw") == "":
		return nil
	}
	return fmt.Errorf("-q%s is not supported: relayq runs the whole queue (-q, or relayq flush; relayq queue retry ID for one message)", val)
}

// runMode runs -bp, -q, -bs or -bi with the configuration of -c; words
// are the whole command line (Modes.Sendmail).
func (a *sendmailArgs) runMode(words []string, env Env, modes Modes) int {
	var args []string
	if a.config != "" {
		args = []string{"-c", a.config}
	}
	switch a.mode {
	case modeList:
		return modes.List(args, env)
	case modeSMTP:
		return a.runSMTP(words, env, modes) // bs.go
	case modeAliases:
		return modes.Aliases(args, env)
	}
	return modes.Flush(args, env)
}
