package main

import (
	"errors"
	"flag"
	"fmt"
)

// newFlags returns a flag set for a subcommand that prints its usage line
// and flags to stderr and never exits the process.
func newFlags(name, synopsis string, env cmdEnv) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; done is true when the command should return code
// at once (--help: 0, bad flags: EX_USAGE).
func parseFlags(fs *flag.FlagSet, args []string, env cmdEnv) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(env.Stdout)
		fs.Usage()
		return exitOK, true
	case err != nil:
		return exitUsage, true
	}
	return exitOK, false
}
