package config

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The value types below check their own syntax when decoded. BurntSushi/toml
// turns their errors into a ParseError that carries the key and its line, so
// "relay.socket_timeout = "5x"" is reported where it is written.

// Duration is a time.Duration written in TOML as a Go duration string
// ("90s", "5m", "120h"). Negative durations are refused.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	s := string(text)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration: write a number with a unit, like \"90s\", \"5m\" or \"2h\"", s)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", s)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String is time.Duration's form without zero trailing units: "5m", not
// "5m0s"; "120h", not "120h0m0s". It parses back to the same value.
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// ByteSize is a size in bytes, written in TOML as an integer or as a string
// with a unit: "512KiB", "25MiB", "1GiB" (powers of 1024) or "10MB" (powers of
// 1000). Units are not case-sensitive; fractions and negatives are refused.
type ByteSize int64

var byteUnits = []struct {
	name string
	size int64
}{
	{"B", 1},
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
}

// UnmarshalTOML takes a TOML integer as bytes and a string as UnmarshalText does.
func (b *ByteSize) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("%d is negative", v)
		}
		*b = ByteSize(v)
		return nil
	case string:
		return b.UnmarshalText([]byte(v))
	default:
		return fmt.Errorf("expected a number of bytes or a string like \"25MiB\", found %s", tomlTypeName(v))
	}
}

// UnmarshalText parses "25MiB", "10 MB", "512KiB" or a plain number of bytes.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	digits := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(digits):])
	bad := fmt.Errorf("%q is not a size: write bytes, or a whole number with a unit (B, KiB, MiB, GiB, KB, MB, GB)", s)
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 {
		return bad
	}
	size := int64(1)
	if unit != "" {
		size = 0
		for _, u := range byteUnits {
			if strings.EqualFold(unit, u.name) {
				size = u.size
			}
		}
		if size == 0 {
			return bad
		}
	}
	if n > math.MaxInt64/size {
		return fmt.Errorf("%q is too large", s)
	}
	*b = ByteSize(n * size)
	return nil
}

// String writes the size with the largest binary unit that divides it
// exactly: "25MiB", "1000B", "0".
func (b ByteSize) String() string {
	if b == 0 {
		return "0"
	}
	for _, u := range slices.Backward(byteUnits[1:5]) { // TiB down to KiB
		if int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// FileMode is a Unix permission mode written in TOML as an octal string,
// "0660" (as chmod takes it). Integers are refused: socket_mode = 660 would
// silently mean something else. Only the permission bits (0777) are allowed.
type FileMode os.FileMode

// UnmarshalTOML takes a string only; see FileMode.
func (m *FileMode) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("write the mode as an octal string, like \"0660\" (found %s)", tomlTypeName(v))
	}
	return m.UnmarshalText([]byte(s))
}

// UnmarshalText parses an octal mode: "0660", "660" or "0o660".
func (m *FileMode) UnmarshalText(text []byte) error {
	s := string(text)
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || s == "" {
		return fmt.Errorf("%q is not an octal mode like \"0660\"", s)
	}
	if n > 0o777 {
		return fmt.Errorf("%q has bits beyond 0777 (only permission bits are allowed)", s)
	}
	*m = FileMode(n)
	return nil
}

// String writes the mode as four octal digits: "0660".
func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// tomlTypeName names the TOML type of a value BurntSushi/toml decoded, for
// error messages.
func tomlTypeName(v any) string {
	switch v.(type) {
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case string:
		return "string"
	case map[string]any:
		return "table"
	case []map[string]any:
		return "array of tables"
	case []any:
		return "array"
	default:
		return "datetime"
	}
}
