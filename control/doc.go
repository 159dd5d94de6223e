// Package control is the daemon's control socket: the way relayq's queue
// and dead-letter commands reach the running daemon, which alone opens the
// database (bbolt's lock admits one process).
//
// The protocol is one JSON request and one JSON response per connection. The
// socket is created with mode 0600, and every connection is checked with
// SO_PEERCRED: only root and the daemon's own user may ask. Commands that
// change the queue come with a later issue; this package answers reads.
package control
