package transport

import (
	"go/build"
	"strings"
	"testing"
)

// TestDeps keeps transport and smtptest free of relayq's other packages:
// transport reports to delivery and must not know the queue (the two never
// import each other) nor the config (only cmd/relayq decodes it, every
// package takes plain Options); it shares with spool's sendmail client only
// smtpcmd, the command lines go-smtp writes, which imports nothing of
// relayq (deps_test.go). smtptest is imported by the tests of transport,
// delivery and tests/, so it must not depend on any of them. Production
// code never imports smtptest.
func TestDeps(t *testing.T) {
	for _, dir := range []string{".", "smtptest"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			if (imp == "relayq" || strings.HasPrefix(imp, "relayq/")) && !(dir == "." && imp == "relayq/smtpcmd") {
				t.Errorf("%s imports %s", pkg.ImportPath, imp)
			}
		}
	}
}
