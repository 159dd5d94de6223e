package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a config file. Parse returns one *Error, or several
// joined with errors.Join when validation finds more than one.
type Error struct {
	File string // the path, or "embedded default"
	Line int    // 0 when the key is not in the file (a default, a value from the url)
	Key  string // dotted key, like "relay.port"; "" for a TOML syntax error
	Msg  string
}

// Error reads "config.toml:12: relay.port: 70000 is not a port (1-65535)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// checker collects the problems found after decoding, each placed on the line
// where its key is set.
type checker struct {
	name string
	data []byte
	md   toml.MetaData
	errs []error
}

// add records a problem with key ("relay.port").
func (c *checker) add(key, format string, args ...any) {
	c.errs = append(c.errs, &Error{
		File: c.name,
		Line: c.line(strings.Split(key, ".")),
		Key:  key,
		Msg:  fmt.Sprintf(format, args...),
	})
}

// set reports whether the file sets key ("relay.port").
func (c *checker) set(key string) bool { return c.md.IsDefined(strings.Split(key, ".")...) }

func (c *checker) err() error { return errors.Join(c.errs...) }

// line returns the line on which key is set, or 0 if the file does not set it.
func (c *checker) line(key []string) int {
	if c.md.IsDefined(key...) {
		if n := keyLine(c.data, key); n > 0 {
			return n
		}
	}
	// Keys in an array of tables ([[limits.rule]]) are neither "defined"
	// for the metadata nor found by keyLine.
	return arrayTableKeyLine(c.data, key) // limits.go
}

// checkKeys rejects keys that no field took: unknown keys, and keys that
// BurntSushi/toml matched to a field only case-insensitively ("PORT").
func (c *checker) checkKeys() {
	var unknown []toml.Key
	for _, k := range c.md.Undecoded() {
		// Report an unknown table once, not once more for each key in it.
		if len(unknown) > 0 && isPrefix(unknown[len(unknown)-1], k) {
			continue
		}
		unknown = append(unknown, k)
		c.errs = append(c.errs, &Error{File: c.name, Line: c.line(k), Key: k.String(), Msg: "unknown key"})
	}
	for _, k := range c.md.Keys() {
		if bareLowerKey(k) {
			continue // most keys: no string built for them
		}
		if s := k.String(); s != strings.ToLower(s) && !freeCaseKey(k) {
			c.errs = append(c.errs, &Error{File: c.name, Line: c.line(k), Key: s, Msg: "unknown key (keys are lower case)"})
		}
	}
}

// bareLowerKey reports whether every part of k is a bare key (letters,
// digits, '_', '-') without an upper-case letter: then k.String() is the
// parts joined by dots, unquoted, and it is its own lower case.
func bareLowerKey(k toml.Key) bool {
	for _, part := range k {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			if c := part[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

// freeCaseKey reports whether k is a name the user chooses rather than a
// key of relayq: a header field ([defaults.headers] List-Unsubscribe) or
// an alias ([aliases] Root, matched without case anyway).
func freeCaseKey(k toml.Key) bool {
	return len(k) == 2 && k[0] == "aliases" || len(k) == 3 && k[0] == "defaults" && k[1] == "headers"
}

func isPrefix(prefix, key toml.Key) bool {
	return len(prefix) < len(key) && slices.Equal(prefix, key[:len(prefix)])
}

// keyLine returns the line of data on which key is set, or 0.
//
// BurntSushi/toml records the position of every key but exports it only in
// the ParseError of a value that fails to decode (toml issue #462). So keyLine
// decodes data once more into a struct built for this one key, whose value
// always fails, and reads the line from that error. It runs only when there is
// an error to report.
func keyLine(data []byte, key []string) int {
	t := reflect.TypeFor[lineProbe]()
	for i := len(key) - 1; i >= 0; i-- {
		if strings.ContainsAny(key[i], `,"\`) || key[i] == "-" {
			return 0 // cannot be spelled as a toml struct tag
		}
		t = reflect.StructOf([]reflect.StructField{{
			Name: "F",
			Type: t,
			Tag:  reflect.StructTag(`toml:"` + key[i] + `"`),
		}})
	}
	_, err := toml.NewDecoder(bytes.NewReader(data)).Decode(reflect.New(t).Interface())
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.Message == errProbe.Error() {
		return pe.Position.Line
	}
	return 0
}

var errProbe = errors.New("line probe")

type lineProbe struct{}

func (*lineProbe) UnmarshalTOML(any) error { return errProbe }

// mdError matches the errors BurntSushi/toml returns as plain strings (type
// mismatches), which carry the line and key only in their text. The
// expressions are compiled on first use, not at start: every command loads
// the config, and `relayq sendmail` should not pay for error paths it
// rarely takes.
var (
	mdError   = lazyRegexp(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)
	badType   = lazyRegexp(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
	notATable = lazyRegexp(`^type mismatch for .*: expected table but found (.+)$`)
	typeNames = map[string]string{ // Go and toml-internal names to TOML ones
		"map[string]any": "table", "[]map[string]any": "array of tables", "[]any": "array",
		"int64": "integer", "float64": "float", "bool": "boolean", "time.Time": "datetime",
		"primitive (string-like)": "a single value", "slice": "array", "map": "table",
	}
)

// lazyRegexp returns a function that compiles expr on its first call.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

func typeName(s string) string {
	if n, ok := typeNames[s]; ok {
		return n
	}
	return s
}

// decodeError turns an error from toml.Decode of data into an *Error that
// names the file, the line and the key.
func decodeError(name string, data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: name, Line: parseErrorLine(data, pe.Position), Key: pe.LastKey, Msg: pe.Message}
	}
	m := mdError().FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	key, _ := strconv.Unquote(m[2])
	msg := m[3]
	if t := badType().FindStringSubmatch(msg); t != nil {
		msg = fmt.Sprintf("expected %s, found %s", typeName(t[2]), typeName(t[1]))
	} else if t := notATable().FindStringSubmatch(msg); t != nil {
		msg = fmt.Sprintf("expected a table, found %s", typeName(t[1]))
	}
	if (key == "relays" || key == "routes") && msg == "expected array, found table" {
		msg += fmt.Sprintf(": write [[%s]], one per entry", key)
		if key == "relays" {
			msg += ", or [relay] for the single relay"
		}
	}
	return &Error{File: name, Line: line, Key: key, Msg: msg}
}

// parseErrorLine is the line of a syntax error. BurntSushi/toml's own line
// number is one short for an error at the very end of the file (a
// backslash there gives line 0 on the first line), so it is checked
// against the line of the error's byte offset.
func parseErrorLine(data []byte, p toml.Position) int {
	if p.Start > 0 && p.Start <= len(data) {
		return max(p.Line, 1+bytes.Count(data[:p.Start], []byte("\n")))
	}
	return p.Line
}
