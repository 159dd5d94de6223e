package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHostsCanonical: the fully qualified name of a host called "vm" is
// the first name of the /etc/hosts line that lists vm (as Debian's
// installer writes "127.0.1.1 vm.example.net vm"); "" when no line does.
func TestHostsCanonical(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	text := "127.0.0.1\tlocalhost\n# 10.0.0.1 vm.wrong.example vm\n127.0.1.1\tvm.example.net vm # the host\n::1 localhost ip6-localhost\n"
	if err := os.WriteFile(hosts, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"vm": "vm.example.net", "VM": "vm.example.net", "db": "", "localhost": "localhost"} {
		if got := hostsCanonical(hosts, name); got != want {
			t.Errorf("hostsCanonical(%q) = %q, want %q", name, got, want)
		}
	}
}
