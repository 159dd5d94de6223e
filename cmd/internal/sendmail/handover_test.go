package sendmail

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"relayq/cmd/internal/sysexits"
)

// A config that does not load here goes, with the whole command line, to
// Modes.Sendmail when it is set (relayq-sendmail, built without cgo: the
// group may be one only NSS knows), which says what it finds: nothing is
// printed here and standard input is left unread. Without it, the error
// and EX_CONFIG, as before. The same for -bs.
func TestConfigErrorHandsOver(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "relayq.toml")
	if err := os.WriteFile(bad, []byte("[submission]\nsocket_group = \"relayq-no-such-group\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-c", bad, "a@example.org"}, {"-bs", "-c", bad}} {
		const input = "Subject: x\r\n\r\nbody\r\n"
		stdin := strings.NewReader(input)
		var stdout, stderr bytes.Buffer
		env := Env{Stdin: stdin, Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
		var handed []string
		modes := Modes{Sendmail: func(a []string, _ Env) int { handed = a; return 42 }}
		if code := Run(args, env, modes); code != 42 || !reflect.DeepEqual(handed, args) {
			t.Errorf("Run(%q) = %d, handed over %q; want 42 from Modes.Sendmail with the same arguments", args, code, handed)
		}
		if stderr.Len() > 0 || stdout.Len() > 0 || stdin.Len() != len(input) {
			t.Errorf("Run(%q) handing over printed %q, %q and read %d bytes of stdin; want nothing", args, stdout.String(), stderr.String(), len(input)-stdin.Len())
		}
		modes.Sendmail = nil
		if code := Run(args, env, modes); code != sysexits.Config || !strings.Contains(stderr.String(), "socket_group") {
			t.Errorf("Run(%q) without Modes.Sendmail = %d, %q; want EX_CONFIG naming socket_group", args, code, stderr.String())
		}
	}
}
