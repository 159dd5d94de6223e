package config

import "strings"

// Matchers for the shapes of line that arrayBlocks and block.keyLine look
// for, written out rather than as regexps: every client command (sendmail
// runs once per message) splits its config into [[relays]] and [[routes]]
// blocks, and compiling and running a regexp over each line cost a
// sendmail call more than a tenth of a millisecond. Each does exactly
// what the regexp in its comment does (lines_test.go compares them), \s
// being RE2's [\t\n\f\r ].

// skipBlanks returns s after its leading \s characters (a loop rather than
// strings.TrimLeft, which builds a set from its cutset at every call).
func skipBlanks(s string) string {
	for len(s) > 0 {
		switch s[0] {
		case '\t', '\n', '\f', '\r', ' ':
			s = s[1:]
		default:
			return s
		}
	}
	return s
}

// cutWord returns s after word and the blanks that follow it, if s begins
// with word.
func cutWord(s, word string) (rest string, ok bool) {
	rest, ok = strings.CutPrefix(s, word)
	return skipBlanks(rest), ok
}

// isTableHeader: ^\s*\[
func isTableHeader(line string) bool {
	return strings.HasPrefix(skipBlanks(line), "[")
}

// isArrayHeader: ^\s*\[\[\s*NAME\s*\]\]
func isArrayHeader(line, name string) bool {
	rest, ok := cutWord(skipBlanks(line), "[[")
	if ok {
		rest, ok = cutWord(rest, name)
	}
	return ok && strings.HasPrefix(rest, "]]")
}

// isSubTable: ^\s*\[\s*NAME\s*\.
func isSubTable(line, name string) bool {
	rest, ok := cutWord(skipBlanks(line), "[")
	if ok {
		rest, ok = cutWord(rest, name)
	}
	return ok && strings.HasPrefix(rest, ".")
}

// setsKey: ^\s*KEY\s*=
func setsKey(line, key string) bool {
	rest, ok := cutWord(skipBlanks(line), key)
	return ok && strings.HasPrefix(rest, "=")
}
