package main

import "relayq/cmd/internal/sysexits"

// Exit codes: package sysexits holds the one table (with what each means
// to the queue, dead and status commands), which relayq-sendmail shares.
// Every subcommand returns one of these; main is the only place that calls
// os.Exit.
const (
	exitOK          = sysexits.OK
	exitUnhealthy   = sysexits.Unhealthy
	exitUsage       = sysexits.Usage
	exitDataErr     = sysexits.DataErr
	exitNoInput     = sysexits.NoInput
	exitNoUser      = sysexits.NoUser
	exitUnavailable = sysexits.Unavailable
	exitSoftware    = sysexits.Software
	exitOSErr       = sysexits.OSErr
	exitCantCreate  = sysexits.CantCreate
	exitIOErr       = sysexits.IOErr
	exitTempFail    = sysexits.TempFail
	exitNoPerm      = sysexits.NoPerm
	exitConfig      = sysexits.Config
)
