// Package control is the daemon's control socket: the way relayq's queue,
// dead-letter and status commands reach the running daemon, which alone
// opens the database (bbolt's lock admits one process).
//
// The protocol is one JSON request and one JSON response per connection. The
// socket is created with mode 0600 (0660 with an admin group), and every
// connection is checked with SO_PEERCRED: only root, the daemon's own user
// and members of the admin group may ask (auth.go).
//
// Reads (list, show, status, queue status) and changes (retry, hold,
// release, delete, expire, requeue, purge) are the queue package's
// operations, one commit each; a change names its messages by ID (or asks for all of them) and is
// answered with what it did to each. Every change is logged with the
// operator's uid and the IDs it touched.
package control
