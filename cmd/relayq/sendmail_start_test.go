package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// maxInitBytes is what one of relayq's packages may allocate when the
// process starts. One compiled regexp is about 4 KiB; the whole of relayq's
// own init work is under 2 KiB.
const maxInitBytes = 4096

// `relayq sendmail` runs once per message, so whatever every process start
// pays is paid per message (issue 6): relayq's packages must not compile
// regexps or build tables in package-level variables (sync.OnceValue defers
// them to first use). The test binary links the same packages as relayq;
// run with GODEBUG=inittrace=1, the runtime reports what each package's
// init allocated.
func TestPackageInitsStayLight(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	line := regexp.MustCompile(`(?m)^init (relayq(?:/\S+)?) @\S+ ms, \S+ ms clock, (\d+) bytes, (\d+) allocs$`)
	matches := line.FindAllStringSubmatch(string(out), -1)
	if len(matches) == 0 {
		t.Fatalf("no inittrace line for relayq's packages in:\n%s", out)
	}
	for _, m := range matches {
		if n, _ := strconv.Atoi(m[2]); n > maxInitBytes {
			t.Errorf("package %s allocates %d bytes (%s allocations) at start, more than %d: every relayq sendmail pays for it; compute it on first use (sync.OnceValue)", m[1], n, m[3], maxInitBytes)
		}
	}
}
