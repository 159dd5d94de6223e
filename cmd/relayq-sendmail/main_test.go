package main

import (
	"strings"
	"testing"

	"relayq/cmd/internal/inittrace"
)

// heavyPrefixes are packages whose init costs relayq's start a millisecond
// or more and that relayq-sendmail exists to leave out: client_golang
// (its default registry), procfs (22 package-level regexps), protobuf
// (detrand reads /proc/self/exe at every start). relayq links them for
// its metrics.
var heavyPrefixes = []string{"github.com/prometheus/", "google.golang.org/protobuf/"}

// maxStartBytes is what the initialisation of every package linked into
// relayq-sendmail may allocate together: 47 KiB in December 2026 (the
// binary; 48 KiB in this test binary, testing included), against relayq's
// 296 KiB. A regression of a few small inits adding up shows here before
// it shows in bench/sendmail.sh.
const maxStartBytes = 64 << 10

// TestInitsStayLight: relayq-sendmail runs once per message (issue 15), so
// what every start pays is paid per message. The test binary links the
// same packages as the command; run with GODEBUG=inittrace=1, the runtime
// reports what each package's init allocated (bytes, which are
// deterministic; not the times).
func TestInitsStayLight(t *testing.T) {
	inits := inittrace.Packages(t, "relayq/config")
	total := 0
	for _, in := range inits {
		total += in.Bytes
		for _, p := range heavyPrefixes {
			if strings.HasPrefix(in.Pkg, p) {
				t.Errorf("relayq-sendmail links %s (init: %d bytes): keep Prometheus in package metrics, which only relayq imports", in.Pkg, in.Bytes)
			}
		}
		limit := 16 << 10
		if strings.HasPrefix(in.Pkg, "relayq/") || in.Pkg == "relayq" {
			limit = 4096
		}
		if in.Bytes > limit {
			t.Errorf("package %s allocates %d bytes at start, more than %d: every message pays for it; compute it on first use (sync.OnceValue), or keep the package out of relayq-sendmail", in.Pkg, in.Bytes, limit)
		}
	}
	if total > maxStartBytes && !raceEnabled {
		t.Errorf("the packages linked into relayq-sendmail allocate %d bytes at start together, more than %d: every message pays for it", total, maxStartBytes)
	}
	t.Logf("%d packages allocate %d bytes at start", len(inits), total)
}
