package rewrite

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// CheckTarget reports why an alias target is refused: relayq never
// delivers locally, so a pipe ("|cmd"), a file ("/path") and an
// ":include:" are errors, and so is an empty target. Quotes around the
// target are looked through.
func CheckTarget(t string) error {
	t = strings.Trim(strings.TrimSpace(t), `"`)
	switch {
	case t == "":
		return errors.New("empty target")
	case strings.HasPrefix(t, "|"):
		return fmt.Errorf("pipe target %q refused: relayq never delivers locally; give an address", t)
	case strings.HasPrefix(t, "/"):
		return fmt.Errorf("file target %q refused: relayq never delivers locally; give an address", t)
	case strings.HasPrefix(strings.ToLower(t), ":include:"):
		return fmt.Errorf("%q refused: relayq does not read :include: files; list the addresses here", t)
	case strings.ContainsAny(t, " \t\r\n<>,"):
		return fmt.Errorf("target %q is not an address", t)
	}
	return nil
}

// LoadAliases reads an /etc/aliases-style file (see ParseAliases).
func LoadAliases(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rewrite: aliases: %w", err)
	}
	defer f.Close()
	return ParseAliases(f, path)
}

// ParseAliases reads the aliases(5) format: "name: target, target",
// continued on lines that start with a space or a tab; '#' starts a
// comment line; blank lines are skipped. Each error names the file (name)
// and line; every error in the file is reported, joined.
func ParseAliases(r io.Reader, name string) (map[string][]string, error) {
	aliases := make(map[string][]string)
	defined := make(map[string]int)
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	// The entry being read, its continuation lines appended: a Builder, as
	// adding each line to a string copied the whole entry every time
	// (quadratic: 30 s for a list of 15,000 addresses).
	var entry strings.Builder
	start, n := 0, 0
	flush := func() {
		if entry.Len() == 0 {
			return
		}
		if err := addAlias(aliases, defined, entry.String(), start); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, start, err))
		}
		entry.Reset()
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if entry.Len() == 0 {
				errs = append(errs, fmt.Errorf("%s:%d: continuation line with no alias before it", name, n))
				continue
			}
			entry.WriteString(" ")
			entry.WriteString(strings.TrimSpace(line))
		default:
			flush()
			entry.WriteString(line)
			start = n
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return aliases, nil
}

// addAlias parses one "name: targets" entry.
func addAlias(aliases map[string][]string, defined map[string]int, entry string, line int) error {
	k, v, ok := strings.Cut(entry, ":")
	k = strings.ToLower(strings.Trim(strings.TrimSpace(k), `"`))
	if !ok || k == "" || strings.ContainsAny(k, " \t@") {
		return fmt.Errorf("%q: want \"name: address, address\"", entry)
	}
	if first, dup := defined[k]; dup {
		return fmt.Errorf("alias %s defined again (first on line %d)", k, first)
	}
	defined[k] = line
	var targets []string
	for _, t := range strings.Split(v, ",") {
		if err := CheckTarget(t); err != nil {
			return fmt.Errorf("alias %s: %w", k, err)
		}
		targets = append(targets, strings.Trim(strings.TrimSpace(t), `"`))
	}
	aliases[k] = targets
	return nil
}
