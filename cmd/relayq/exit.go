package main

// Exit codes, from sysexits(3) (and 1, see below). Every subcommand returns one of these; main
// is the only place that calls os.Exit.
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
const (
	exitOK          = 0  // EX_OK: done (for sendmail: the daemon answered 250, or the maildrop file is fsynced)
	exitUnhealthy   = 1  // not in sysexits(3): `relayq status` found a [health] limit exceeded, as monitoring checks expect
	exitUsage       = 64 // EX_USAGE: bad flags or arguments
	exitDataErr     = 65 // EX_DATAERR: the message itself is malformed; a queue change the message's state does not allow
	exitNoInput     = 66 // EX_NOINPUT: an input file could not be read; no such queue ID
	exitNoUser      = 67 // EX_NOUSER: an address is not valid
	exitUnavailable = 69 // EX_UNAVAILABLE: a service needed is not there (daemon not running)
	exitSoftware    = 70 // EX_SOFTWARE: internal error
	exitOSErr       = 71 // EX_OSERR: an operating-system error (cannot create a socket, …)
	exitCantCreate  = 73 // EX_CANTCREAT: an output file cannot be created
	exitIOErr       = 74 // EX_IOERR: an I/O error
	exitTempFail    = 75 // EX_TEMPFAIL: try again later; nothing was accepted
	exitNoPerm      = 77 // EX_NOPERM: not allowed
	exitConfig      = 78 // EX_CONFIG: the configuration is wrong
)
