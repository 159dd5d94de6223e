package sendmail

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseSendmailArgs: any command line (words separated by NUL, which
// argv cannot hold) either fails with an error, or parses so that the
// recipients are the words after the flags, as they were; -C and -X are
// never taken; the config file comes only from a -c flag, and a value
// comes from the flag's own word or the next one.
func FuzzParseSendmailArgs(f *testing.F) {
	for _, s := range []string{
		"-t\x00-i",
		"-ti\x00-fsender@example.org\x00-F\x00Full Name\x00rcpt@example.net",
		"-oi\x00-odb\x00-oem\x00--\x00-not-a-flag@example.net",
		"-c\x00/etc/relayq.toml\x00a@example.net\x00-t",
		"-C/etc/evil.cf\x00a@example.net",
		"-X\x00/tmp/log",
		"-q",
		"-bs",
		"-bm\x00-v\x00a@example.net",
		"-f\x00a@example.org\r\nRCPT TO:<evil@example.com>\x00b@example.net",
		"-h\x0017\x00-N\x00never\x00-R\x00hdrs\x00-V\x00env\x00-B\x008BITMIME\x00a@example.net",
		"-f",
		"--help",
		"-",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var args []string
		if line != "" {
			args = strings.Split(line, "\x00")
		}
		a, err := parseSendmailArgs(args)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if a.help {
			return
		}
		flags := len(args) - len(a.opts.Recipients)
		if flags < 0 || !slices.Equal(args[flags:], a.opts.Recipients) {
			t.Fatalf("recipients %q are not the last words of %q", a.opts.Recipients, args)
		}
		if a.config != "" && !argOf(args[:flags], 'c', a.config) {
			t.Fatalf("config %q from %q, not from a -c flag", a.config, args)
		}
		if a.opts.From != "" && !argOf(args[:flags], 'f', a.opts.From) && !argOf(args[:flags], 'r', a.opts.From) {
			t.Fatalf("sender %q from %q, not from -f or -r", a.opts.From, args)
		}
		if a.opts.FullName != "" && !argOf(args[:flags], 'F', a.opts.FullName) {
			t.Fatalf("full name %q from %q, not from -F", a.opts.FullName, args)
		}
		for i, w := range args[:flags] {
			if (w == "-C" || w == "-X") && (i == 0 || !wantsNext(args[i-1])) {
				t.Fatalf("%q accepted as a flag in %q", w, args)
			}
		}
	})
}

// argOf reports whether val is the argument of flag c somewhere in words:
// the rest of a word holding -…c, or the word after one ending in c.
func argOf(words []string, c byte, val string) bool {
	for i, w := range words {
		if len(w) < 2 || w[0] != '-' {
			continue
		}
		if j := strings.IndexByte(w[1:], c); j >= 0 {
			rest := w[j+2:]
			if rest == val || rest == "" && i+1 < len(words) && words[i+1] == val {
				return true
			}
		}
	}
	return false
}

// wantsNext reports whether flag word w ends with a flag that takes the
// next word as its argument ("-f", "-tf"), so that the next word is not a
// flag.
func wantsNext(w string) bool {
	const takesArg = "cfrFobABNRVhLpO"
	if len(w) < 2 || w[0] != '-' || w == "--" {
		return false
	}
	i := strings.IndexAny(w[1:], takesArg)
	return i == len(w)-2
}
