package main

// Exit codes, from sysexits(3). Every subcommand returns one of these; main
// is the only place that calls os.Exit.
const (
	exitOK          = 0  // EX_OK: done (for sendmail: the daemon answered 250, or the maildrop file is fsynced)
	exitUsage       = 64 // EX_USAGE: bad flags or arguments
	exitDataErr     = 65 // EX_DATAERR: the message itself is malformed
	exitNoInput     = 66 // EX_NOINPUT: an input file could not be read
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
