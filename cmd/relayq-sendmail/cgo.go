//go:build cgo

package main

// withCgo: this build reaches the C library's user database (NSS) itself
// (userdb.go).
const withCgo = true
