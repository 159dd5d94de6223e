package rewrite

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestParseAliasesLongList: an alias of 15,000 addresses on continuation
// lines (a mailing list kept in /etc/aliases, ~1 MB) is read with memory
// in proportion to the file. Before, each continuation line was added to
// a string holding the entry so far: 8 GB copied, 30 s for relayq serve
// or newaliases to start.
func TestParseAliasesLongList(t *testing.T) {
	var b strings.Builder
	b.WriteString("crowd: ")
	const n = 15000
	for i := range n {
		if i > 0 {
			b.WriteString(",\n  ")
		}
		fmt.Fprintf(&b, "member%05d.%s@example.net", i, strings.Repeat("x", 50))
	}
	b.WriteString("\n")
	file := b.String()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := ParseAliases(strings.NewReader(file), "aliases")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(got["crowd"]) != n || got["crowd"][n-1] != fmt.Sprintf("member%05d.%s@example.net", n-1, strings.Repeat("x", 50)) {
		t.Fatalf("crowd has %d targets, want %d", len(got["crowd"]), n)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32*uint64(len(file)) {
		t.Errorf("reading a %d-byte aliases file allocated %d bytes, want at most 32 times its size", len(file), alloc)
	}
}
