package main

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// maxInitBytes is what one of relayq's packages may allocate when the
// process starts. One compiled regexp is about 4 KiB; the whole of relayq's
// own init work is under 2 KiB.
const maxInitBytes = 4096

// maxDependencyInitBytes is what any other package linked into relayq (the
// standard library's, a dependency's) may allocate at start. The largest
// ones not listed in heavyInits allocate 15 KiB (runtime/metrics) and
// 11 KiB (unicode's tables); a package that builds tables or compiles
// regexps in package-level variables (go-message's charset tables,
// golang.org/x/text encodings) allocates several times more.
const maxDependencyInitBytes = 16 << 10

// heavyInits are the packages whose initialisation is known to allocate
// more than maxDependencyInitBytes, each with its ceiling: today's figure
// with room for a new release. All of them come with
// prometheus/client_golang, which package metrics links into relayq, so
// into `relayq sendmail` too (issue 15: they are most of the 0.3 MB and
// ~1.2 ms that relayq's start costs over a Go program that does nothing).
// When they leave relayq, remove them here.
var heavyInits = map[string]int{
	// Regexps and tables in package-level variables (94 KiB in v0.22).
	"github.com/prometheus/procfs": 128 << 10,
	// The default registry with its Go and process collectors (63 KiB
	// in v1.25).
	"github.com/prometheus/client_golang/prometheus": 96 << 10,
}

// maxStartBytes is what the initialisation of every package linked into
// relayq may allocate together: 296 KiB in December 2026 (303 KiB in the
// test binary), three quarters of it client_golang's and what it brings. A
// regression of a few small inits adding up shows here before it shows in
// bench/sendmail.sh.
const maxStartBytes = 352 << 10

// `relayq sendmail` runs once per message, so whatever every process start
// pays is paid per message (issues 6 and 15): relayq's packages must not
// compile regexps or build tables in package-level variables
// (sync.OnceValue defers them to first use), and a new dependency must not
// bring a heavy init onto the sendmail path. The test binary links the same
// packages as relayq; run with GODEBUG=inittrace=1, the runtime reports what
// each package's init allocated (bytes are deterministic, unlike the times
// it also prints, which this test ignores).
func TestPackageInitsStayLight(t *testing.T) {
	inits := packageInits(t)
	total := 0
	for _, in := range inits {
		total += in.bytes
		limit, why := maxDependencyInitBytes, "a dependency linked into relayq"
		switch heavy, ok := heavyInits[in.pkg]; {
		case strings.HasPrefix(in.pkg, "relayq/") || in.pkg == "relayq":
			limit, why = maxInitBytes, "a package of relayq"
		case ok && raceEnabled:
			continue // under the race detector client_golang's init allocates 1.4 MB
		case ok:
			limit, why = heavy, "a known heavy init (heavyInits)"
		}
		if in.bytes > limit {
			t.Errorf("package %s allocates %d bytes (%d allocations) at start, more than %d for %s: every relayq sendmail pays for it; compute it on first use (sync.OnceValue), or keep the package off the sendmail path", in.pkg, in.bytes, in.allocs, limit, why)
		}
	}
	if total > maxStartBytes && !raceEnabled {
		t.Errorf("the packages linked into relayq allocate %d bytes at start together, more than %d: every relayq sendmail pays for it", total, maxStartBytes)
	}
	for pkg := range heavyInits {
		if !links(inits, pkg) {
			t.Errorf("heavyInits lists %s, which relayq no longer links: remove it, and lower maxStartBytes to what is left", pkg)
		}
	}
	t.Logf("%d packages allocate %d bytes at start", len(inits), total)
}

// packageInit is one line of GODEBUG=inittrace=1.
type packageInit struct {
	pkg           string
	bytes, allocs int
}

// packageInits runs the test binary without tests under
// GODEBUG=inittrace=1 and returns what each package's init allocated.
func packageInits(t *testing.T) []packageInit {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	line := regexp.MustCompile(`(?m)^init (\S+) @\S+ ms, \S+ ms clock, (\d+) bytes, (\d+) allocs$`)
	var inits []packageInit
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		b, _ := strconv.Atoi(m[2])
		a, _ := strconv.Atoi(m[3])
		inits = append(inits, packageInit{pkg: m[1], bytes: b, allocs: a})
	}
	if !links(inits, "relayq/config") {
		t.Fatalf("no inittrace line for relayq's packages in:\n%s", out)
	}
	return inits
}

// links says whether pkg is among inits.
func links(inits []packageInit, pkg string) bool {
	return slices.ContainsFunc(inits, func(in packageInit) bool { return in.pkg == pkg })
}
