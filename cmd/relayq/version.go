package main

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the release, set at build time with
// -ldflags "-X main.version=1.2.3"; empty, the module's version and VCS
// revision from the build information are used.
var version string

// versionString is what `relayq --version` prints: "relayq 1.2.3 (go1.24.1)",
// or for a build from a checkout "relayq (devel) 128ac36+modified (go1.24.1)".
func versionString() string {
	v := version
	if v == "" {
		v = buildVersion()
	}
	return "relayq " + v + " (" + runtime.Version() + ")"
}

// buildVersion is the main module's version and the VCS revision it was
// built from, from the binary's build information.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev == "" || strings.Contains(v, rev[:min(len(rev), 12)]) {
		return v // a tagged or pseudo-version already names the commit
	}
	return v + " " + rev[:min(len(rev), 7)] + modified
}
