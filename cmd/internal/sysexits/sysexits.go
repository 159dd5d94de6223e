// Package sysexits is relayq's one table of exit codes, from sysexits(3)
// (and 1, see Unhealthy), shared by the two commands: relayq and
// relayq-sendmail. Every subcommand returns one of these; only the mains
// call os.Exit.
//
// The queue, dead and status commands (which ask the daemon) use:
//
//	0   done, for every ID named
//	1   status only: the daemon answered, but a [health] limit is exceeded
//	64  bad flags or arguments (a malformed ID, an unknown state or reply class)
//	65  queue release: a message was not on hold (nothing was done to it);
//	    or an ID named a message whose record is damaged (does not
//	    decode): only delete and expire work on it
//	66  an ID named no message or dead letter (the others were done), or
//	    not one of the kind asked for (dead show of a queued message)
//	69  the daemon is not running (nothing answers on the control socket)
//	75  a message was being delivered (or, for retry, is held), so it was
//	    left alone; or the daemon could not answer: try again
//	77  the control socket refused this user
//
// When IDs fail for different reasons, 66 wins over the others.
package sysexits

const (
	OK          = 0  // EX_OK: done (for sendmail: the daemon answered 250, or the maildrop file is fsynced)
	Unhealthy   = 1  // not in sysexits(3): `relayq status` found a [health] limit exceeded, as monitoring checks expect
	Usage       = 64 // EX_USAGE: bad flags or arguments
	DataErr     = 65 // EX_DATAERR: the message itself is malformed; a queue change the message's state does not allow
	NoInput     = 66 // EX_NOINPUT: an input file could not be read; no such queue ID
	NoUser      = 67 // EX_NOUSER: an address is not valid
	Unavailable = 69 // EX_UNAVAILABLE: a service needed is not there (daemon not running)
	Software    = 70 // EX_SOFTWARE: internal error
	OSErr       = 71 // EX_OSERR: an operating-system error (cannot create a socket, …)
	CantCreate  = 73 // EX_CANTCREAT: an output file cannot be created
	IOErr       = 74 // EX_IOERR: an I/O error
	TempFail    = 75 // EX_TEMPFAIL: try again later; nothing was accepted
	NoPerm      = 77 // EX_NOPERM: not allowed
	Config      = 78 // EX_CONFIG: the configuration is wrong
)
