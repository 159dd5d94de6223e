// Package inittrace is a test helper for relayq's commands: it reads what
// each package's initialisation allocated when a test binary starts
// (GODEBUG=inittrace=1). The bytes are deterministic, unlike the times the
// runtime also prints, which it ignores. relayq and relayq-sendmail start
// once per message, so their tests use it to keep heavy package inits off
// that path.
package inittrace

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// Init is one line of GODEBUG=inittrace=1: a package and what its init
// allocated.
type Init struct {
	Pkg           string
	Bytes, Allocs int
}

// line is compiled at first use: a package-level regexp is the kind of
// init the tests that use this package catch.
var line = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?m)^init (\S+) @\S+ ms, \S+ ms clock, (\d+) bytes, (\d+) allocs$`)
})

// Packages runs the calling test binary without tests under
// GODEBUG=inittrace=1 and returns what each package's init allocated. It
// fails the test when no line names want, one of the binary's own
// packages (so that a change of the trace's format cannot pass as "no
// heavy init").
func Packages(t testing.TB, want string) []Init {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	var inits []Init
	for _, m := range line().FindAllStringSubmatch(string(out), -1) {
		b, _ := strconv.Atoi(m[2])
		a, _ := strconv.Atoi(m[3])
		inits = append(inits, Init{Pkg: m[1], Bytes: b, Allocs: a})
	}
	if !Links(inits, want) {
		t.Fatalf("no inittrace line for %s in:\n%s", want, out)
	}
	return inits
}

// Links says whether pkg is among inits.
func Links(inits []Init, pkg string) bool {
	return slices.ContainsFunc(inits, func(in Init) bool { return in.Pkg == pkg })
}
