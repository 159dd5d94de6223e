package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strconv"
	"strings"
)

// redacted stands in for a secret in LogValue.
const redacted = "[redacted]"

// LogValue is the effective config as a slog group named by the TOML keys,
// for the log line at start. Fields tagged redact:"secret" (relay.auth.pass)
// show "[redacted]" when set; the relay url shows its password as "xxxxx".
func (c *Config) LogValue() slog.Value {
	return structLogValue(reflect.ValueOf(*c))
}

func structLogValue(v reflect.Value) slog.Value {
	t := v.Type()
	attrs := make([]slog.Attr, 0, t.NumField())
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		key := f.Tag.Get("toml")
		if !f.IsExported() {
			continue
		}
		if key == "-" { // [aliases]' entries
			key = strings.ToLower(f.Name)
		}
		switch {
		case f.Anonymous:
			attrs = append(attrs, slog.Attr{Key: "", Value: structLogValue(fv)}) // inlined
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			items := make([]slog.Attr, fv.Len())
			for j := range fv.Len() {
				items[j] = slog.Attr{Key: strconv.Itoa(j), Value: structLogValue(fv.Index(j))}
			}
			attrs = append(attrs, slog.Attr{Key: key, Value: slog.GroupValue(items...)})
		case f.Tag.Get("redact") == "secret":
			s := ""
			if !fv.IsZero() {
				s = redacted
			}
			attrs = append(attrs, slog.String(key, s))
		case f.Tag.Get("redact") == "url":
			attrs = append(attrs, slog.String(key, redactURL(fv.String())))
		case fv.Kind() == reflect.Struct && !isText(fv):
			attrs = append(attrs, slog.Attr{Key: key, Value: structLogValue(fv)})
		default:
			attrs = append(attrs, slog.Any(key, scalarLogValue(fv)))
		}
	}
	return slog.GroupValue(attrs...)
}

// scalarLogValue shows Duration, ByteSize and FileMode as they are written
// in the file ("5m", "25MiB", "0666") rather than as numbers.
func scalarLogValue(v reflect.Value) any {
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	return v.Interface()
}

// redactURL hides the password of a url. A url that does not parse (which a
// loaded Config never holds) is hidden whole.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return redacted
	}
	redactQueryProxy(u)
	return u.Redacted()
}
