package config

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		str     string // String(), "" if in is refused
		wantErr string
	}{
		{in: "5m", want: 5 * time.Minute, str: "5m"},
		{in: "90s", want: 90 * time.Second, str: "1m30s"},
		{in: "120h", want: 120 * time.Hour, str: "120h"},
		{in: "1h30m", want: 90 * time.Minute, str: "1h30m"},
		{in: "1h0m1s", want: time.Hour + time.Second, str: "1h0m1s"},
		{in: "250ms", want: 250 * time.Millisecond, str: "250ms"},
		{in: "0s", want: 0, str: "0s"},
		{in: "300", wantErr: `"300" is not a duration`},
		{in: "5 minutes", wantErr: `"5 minutes" is not a duration`},
		{in: "", wantErr: `"" is not a duration`},
		{in: "-1s", wantErr: `"-1s" is negative`},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Duration(%q): error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || d.Duration != tt.want || d.String() != tt.str {
			t.Errorf("Duration(%q) = %v %q, %v; want %v %q", tt.in, d.Duration, d.String(), err, tt.want, tt.str)
		}
		var back Duration
		if err := back.UnmarshalText([]byte(d.String())); err != nil || back != d {
			t.Errorf("Duration(%q).String() = %q does not parse back: %v", tt.in, d.String(), err)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		toml    string // the value in `v = …`
		want    ByteSize
		str     string
		wantErr string
	}{
		{toml: `0`, want: 0, str: "0"},
		{toml: `1000`, want: 1000, str: "1000B"},
		{toml: `1048576`, want: 1 << 20, str: "1MiB"},
		{toml: `"25MiB"`, want: 25 << 20, str: "25MiB"},
		{toml: `"25 MiB"`, want: 25 << 20, str: "25MiB"},
		{toml: `"512KiB"`, want: 512 << 10, str: "512KiB"},
		{toml: `"512kib"`, want: 512 << 10, str: "512KiB"},
		{toml: `"10MB"`, want: 10e6, str: "10000000B"},
		{toml: `"1GB"`, want: 1e9, str: "1000000000B"},
		{toml: `"2GiB"`, want: 2 << 30, str: "2GiB"},
		{toml: `"3TiB"`, want: 3 << 40, str: "3TiB"},
		{toml: `"1536KiB"`, want: 1536 << 10, str: "1536KiB"},
		{toml: `"77B"`, want: 77, str: "77B"},
		{toml: `"77"`, want: 77, str: "77B"},
		{toml: `-1`, wantErr: "-1 is negative"},
		{toml: `"-1MiB"`, wantErr: `"-1MiB" is not a size`},
		{toml: `"1.5MiB"`, wantErr: `"1.5MiB" is not a size`},
		{toml: `"25M"`, wantErr: `"25M" is not a size`},
		{toml: `"MiB"`, wantErr: `"MiB" is not a size`},
		{toml: `""`, wantErr: `"" is not a size`},
		{toml: `"9999999TiB"`, wantErr: `"9999999TiB" is too large`},
		{toml: `1.5`, wantErr: "found float"},
		{toml: `true`, wantErr: "found boolean"},
	}
	for _, tt := range tests {
		var v struct{ V ByteSize }
		_, err := toml.Decode("v = "+tt.toml, &v)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ByteSize(%s): error %v, want %q", tt.toml, err, tt.wantErr)
			}
			continue
		}
		if err != nil || v.V != tt.want || v.V.String() != tt.str {
			t.Errorf("ByteSize(%s) = %d %q, %v; want %d %q", tt.toml, v.V, v.V.String(), err, tt.want, tt.str)
		}
		var back ByteSize
		if err := back.UnmarshalText([]byte(v.V.String())); err != nil || back != v.V {
			t.Errorf("ByteSize(%s).String() = %q does not parse back: %v", tt.toml, v.V.String(), err)
		}
	}
}

func TestFileMode(t *testing.T) {
	tests := []struct {
		toml    string
		want    FileMode
		wantErr string
	}{
		{toml: `"0660"`, want: 0o660},
		{toml: `"660"`, want: 0o660},
		{toml: `"0o600"`, want: 0o600},
		{toml: `"0777"`, want: 0o777},
		{toml: `"0"`, want: 0},
		{toml: `"1777"`, wantErr: "has bits beyond 0777"},
		{toml: `"0999"`, wantErr: "is not an octal mode"},
		{toml: `""`, wantErr: "is not an octal mode"},
		{toml: `"rw-rw-rw-"`, wantErr: "is not an octal mode"},
		{toml: `660`, wantErr: `write the mode as an octal string, like "0660" (found integer)`},
		{toml: `0o660`, wantErr: "(found integer)"},
	}
	for _, tt := range tests {
		var v struct{ V FileMode }
		_, err := toml.Decode("v = "+tt.toml, &v)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("FileMode(%s): error %v, want %q", tt.toml, err, tt.wantErr)
			}
			continue
		}
		if err != nil || v.V != tt.want {
			t.Errorf("FileMode(%s) = %v, %v; want %v", tt.toml, v.V, err, tt.want)
		}
	}
	if got := FileMode(0o660).String(); got != "0660" {
		t.Errorf("String() = %q, want 0660", got)
	}
}

// TestKeyLine: the line of a key, however the file spells it.
func TestKeyLine(t *testing.T) {
	data := []byte(`# comment
top = 1
[relay]
port = 25
tls = { servername = "a", bogus = 1 }
auth.user = "u"
list = [
  1,
  2,
]

[relay.deep]
x = 1
"quoted key" = 2
`)
	tests := []struct {
		key  []string
		want int
	}{
		{[]string{"top"}, 2},
		{[]string{"relay"}, 3},
		{[]string{"relay", "port"}, 4},
		{[]string{"relay", "tls", "bogus"}, 5},
		{[]string{"relay", "auth", "user"}, 6},
		{[]string{"relay", "list"}, 7},
		{[]string{"relay", "deep"}, 12},
		{[]string{"relay", "deep", "x"}, 13},
		{[]string{"relay", "deep", "quoted key"}, 14},
		{[]string{"absent"}, 0},
	}
	for _, tt := range tests {
		if got := keyLine(data, tt.key); got != tt.want {
			t.Errorf("keyLine(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "c.toml", Line: 12, Key: "relay.port", Msg: "70000 is not a port (1-65535)"}, "c.toml:12: relay.port: 70000 is not a port (1-65535)"},
		{Error{File: "c.toml", Key: "relay.port", Msg: "m"}, "c.toml: relay.port: m"},
		{Error{File: "c.toml", Line: 3, Msg: "m"}, "c.toml:3: m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
