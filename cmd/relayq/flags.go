package main

import (
	"bytes"
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
//
// The flag package prints the usage itself on --help and on a bad flag;
// that text is held back and goes to stdout for --help (asked for), to
// stderr with the error otherwise, and only once.
func parseFlags(fs *flag.FlagSet, args []string, env cmdEnv) (code int, done bool) {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(env.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		env.Stdout.Write(out.Bytes())
		return exitOK, true
	case err != nil:
		env.Stderr.Write(out.Bytes())
		return exitUsage, true
	}
	return exitOK, false
}
