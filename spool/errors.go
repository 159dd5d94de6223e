package spool

import "errors"

// Errors a caller can test for with errors.Is.
var (
	// ErrUnreachable is returned by Submit when the daemon's socket cannot be
	// connected to (missing, refused, no permission), the daemon is still
	// starting, or the connection failed before the end of the message was
	// sent. Nothing was accepted; `relayq sendmail` then falls back to the
	// maildrop.
	ErrUnreachable = errors.New("spool: daemon unreachable")
	// ErrStarting is carried by the SubmitError that Server.Submit (the
	// JSON API) returns while the queue is not open yet (starting.go).
	ErrStarting = errors.New("spool: relayq is starting")
	// ErrBadMessage is returned by Prepare for a message relayq will not
	// take: over the size limit, or containing NUL octets (EX_DATAERR).
	ErrBadMessage = errors.New("spool: bad message")
	// ErrBadAddress is returned by Prepare for a sender or recipient that is
	// not a valid address, and for CR, LF or other control characters in -f,
	// -F or an address (EX_NOUSER).
	ErrBadAddress = errors.New("spool: bad address")
	// ErrNoRecipients is returned by Prepare when neither the arguments nor
	// (with -t) the headers name a recipient (EX_USAGE).
	ErrNoRecipients = errors.New("spool: no recipients")
	// ErrBadDSN is returned by Submit and WriteMaildrop for DSN parameters
	// (RET, ENVID, NOTIFY, ORCPT) that are not valid (EX_USAGE).
	ErrBadDSN = errors.New("spool: bad DSN parameter")
	// ErrSocketInUse is returned by Start when another relayq answers on
	// the submission socket: the socket is left alone.
	ErrSocketInUse = errors.New("another relayq is answering on it")
	// ErrNoRoom is returned by MaildropRoom while the queue's file system
	// has less free space than min_free: the maildrop takes no message then,
	// as intake takes none (EX_TEMPFAIL).
	ErrNoRoom = errors.New("spool: not enough free space for the queue")
)
