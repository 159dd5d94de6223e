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

// Modes.UserDB is asked only when the call relies on the user or group
// database (the user's name for the default sender, a config naming a
// group by name), and its no sends the whole call to Modes.Sendmail with
// standard input unread; a call with -f and a plain config never asks.
func TestUserDBAskedOnlyWhenNeeded(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "maildrop"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.toml")
	group := filepath.Join(dir, "group.toml")
	for path, text := range map[string]string{
		plain: "state_dir = \"" + dir + "\"\n",
		group: "state_dir = \"" + dir + "\"\n[submission]\nsocket_group = \"root\"\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		args []string
		ask  bool
	}{
		{"-f and a plain config", []string{"-c", plain, "-f", "a@example.org", "b@example.org"}, false},
		{"the default sender", []string{"-c", plain, "b@example.org"}, true},
		{"the null sender (a From field names the user)", []string{"-c", plain, "-f", "<>", "b@example.org"}, true},
		{"a group by name in the config", []string{"-c", group, "-f", "a@example.org", "b@example.org"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, answer := range []bool{true, false} {
				const input = "Subject: x\r\n\r\nbody\r\n"
				stdin := strings.NewReader(input)
				var stdout, stderr bytes.Buffer
				env := Env{Stdin: stdin, Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
				asked := false
				var handed []string
				modes := Modes{
					Sendmail: func(a []string, _ Env) int { handed = a; return 42 },
					UserDB:   func() bool { asked = true; return answer },
				}
				code := Run(tt.args, env, modes)
				if asked != tt.ask {
					t.Fatalf("UserDB asked: %v, want %v", asked, tt.ask)
				}
				if tt.ask && !answer {
					if code != 42 || !reflect.DeepEqual(handed, tt.args) || stdin.Len() != len(input) || stderr.Len() > 0 {
						t.Errorf("told no: exit %d, handed over %q, %d bytes of stdin read, stderr %q; want Modes.Sendmail's 42 with the same arguments, nothing read or printed",
							code, handed, len(input)-stdin.Len(), stderr.String())
					}
					continue
				}
				if code != sysexits.OK || handed != nil {
					t.Errorf("exit %d (stderr %q), handed over %q; want the message in the maildrop (exit 0) and no hand-over", code, stderr.String(), handed)
				}
			}
		})
	}
}
