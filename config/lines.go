package config

// Matchers for the shapes of line that arrayBlocks and block.keyLine look
// for, written out rather than as regexps: every client command (sendmail
// runs once per message) splits its config into [[relays]] and [[routes]]
// blocks, and compiling and running a regexp over each line cost a
// sendmail call more than a tenth of a millisecond. Each does exactly
// what the regexp in its comment does (lines_test.go compares them), \s
// being RE2's [\t\n\f\r ].

// text is a line, held as either: the file as read is []byte, its lines
// once split are strings, and a conversion would copy the whole file.
type text interface{ ~string | ~[]byte }

// skipBlanks returns s after its leading \s characters.
func skipBlanks[T text](s T) T {
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
func cutWord[T text](s T, word string) (rest T, ok bool) {
	if len(s) < len(word) || string(s[:len(word)]) != word {
		return s, false
	}
	return skipBlanks(s[len(word):]), true
}

// startsWith reports whether s begins with prefix.
func startsWith[T text](s T, prefix string) bool {
	return len(s) >= len(prefix) && string(s[:len(prefix)]) == prefix
}

// isTableHeader: ^\s*\[
func isTableHeader[T text](line T) bool {
	return startsWith(skipBlanks(line), "[")
}

// isArrayHeader: ^\s*\[\[\s*NAME\s*\]\]
func isArrayHeader[T text](line T, name string) bool {
	rest, ok := cutWord(skipBlanks(line), "[[")
	if ok {
		rest, ok = cutWord(rest, name)
	}
	return ok && startsWith(rest, "]]")
}

// isSubTable: ^\s*\[\s*NAME\s*\.
func isSubTable[T text](line T, name string) bool {
	rest, ok := cutWord(skipBlanks(line), "[")
	if ok {
		rest, ok = cutWord(rest, name)
	}
	return ok && startsWith(rest, ".")
}

// setsKey: ^\s*KEY\s*=
func setsKey[T text](line T, key string) bool {
	rest, ok := cutWord(skipBlanks(line), key)
	return ok && startsWith(rest, "=")
}
