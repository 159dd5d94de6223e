package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestWithoutCommentLines(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"comment lines emptied, numbers kept", "# a\nx = 1\n  # b\n\t#c\ny = 2\n", "\nx = 1\n\n\ny = 2\n"},
		{"comment after a value kept", "x = 1 # one\n", "x = 1 # one\n"},
		{"hash in a string kept", "x = \"#1\"\n", "x = \"#1\"\n"},
		{"CRLF", "# a\r\nx = 1\r\n", "\nx = 1\r\n"},
		{"no final newline", "x = 1\n# end", "x = 1\n"},
		{"inside an array", "x = [\n  # one\n  1,\n]\n", "x = [\n\n  1,\n]\n"},
		{"multi-line basic string: untouched", "# a\nx = \"\"\"\n# not a comment\n\"\"\"\n", "# a\nx = \"\"\"\n# not a comment\n\"\"\"\n"},
		{"multi-line literal string: untouched", "x = '''\n# not a comment\n'''\n", "x = '''\n# not a comment\n'''\n"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(withoutCommentLines([]byte(tt.in))); got != tt.want {
				t.Errorf("withoutCommentLines(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// The example, the usual /etc/relayq/config.toml, decodes to the same
// Config with its comment lines as without.
func TestExampleSameWithoutComments(t *testing.T) {
	with, without := defaults(), defaults()
	if _, err := toml.Decode(string(exampleConfig), with); err != nil {
		t.Fatal(err)
	}
	if _, err := toml.Decode(string(withoutCommentLines(exampleConfig)), without); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(with, without) {
		t.Errorf("the example decodes differently without its comment lines:\nwith:    %+v\nwithout: %+v", with, without)
	}
}

// Errors name the line in the file as written, comment lines counted.
func TestErrorLineAfterComments(t *testing.T) {
	for _, text := range []string{
		"# one\n# two\n[relay]\n  # three\nport = \"x\"\n",
		"# one\n# two\n[relay]\n  # three\nport = 70000\n",
		"# one\n# two\n[relay]\n  # three\nport = = 1\n",
	} {
		_, err := testLoader(t).parse([]byte(text), "test.toml")
		var e *Error
		if !errors.As(err, &e) || e.Line != 5 {
			t.Errorf("parse(%q): %v, want an error on line 5", text, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "test.toml:5:") {
			t.Errorf("error %q does not start with test.toml:5:", err)
		}
	}
}
