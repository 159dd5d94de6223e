package main

import (
	"strings"
	"testing"

	"relayq/cmd/internal/inittrace"
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
	inits := inittrace.Packages(t, "relayq/config")
	total := 0
	for _, in := range inits {
		total += in.Bytes
		limit, why := maxDependencyInitBytes, "a dependency linked into relayq"
		switch heavy, ok := heavyInits[in.Pkg]; {
		case strings.HasPrefix(in.Pkg, "relayq/") || in.Pkg == "relayq":
			limit, why = maxInitBytes, "a package of relayq"
		case ok && raceEnabled:
			continue // under the race detector client_golang's init allocates 1.4 MB
		case ok:
			limit, why = heavy, "a known heavy init (heavyInits)"
		}
		if in.Bytes > limit {
			t.Errorf("package %s allocates %d bytes (%d allocations) at start, more than %d for %s: every relayq sendmail pays for it; compute it on first use (sync.OnceValue), or keep the package off the sendmail path", in.Pkg, in.Bytes, in.Allocs, limit, why)
		}
	}
	if total > maxStartBytes && !raceEnabled {
		t.Errorf("the packages linked into relayq allocate %d bytes at start together, more than %d: every relayq sendmail pays for it", total, maxStartBytes)
	}
	for pkg := range heavyInits {
		if !inittrace.Links(inits, pkg) {
			t.Errorf("heavyInits lists %s, which relayq no longer links: remove it, and lower maxStartBytes to what is left", pkg)
		}
	}
	t.Logf("%d packages allocate %d bytes at start", len(inits), total)
}
