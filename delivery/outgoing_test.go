package delivery

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestOutgoingRewritesTheHeaderOnly: a part's sender policy gets the
// stored sender and header block, and the relay gets its result followed
// by the stored body bytes unchanged, with the size (for SIZE=) of what is
// sent; without a policy the stored message goes as it is.
func TestOutgoingRewritesTheHeaderOnly(t *testing.T) {
	body := "\r\n.line with a dot\r\n\r\nFrom: not a header\r\n"
	stored := "Received: by relayq\r\n\tid x\r\nFrom: app@web1\r\nSubject: s\r\n" + body
	var gotHeader string
	policy := func(from string, header []byte) (string, []byte) {
		gotHeader = string(header)
		return "bounces@example.org", []byte(strings.Replace(string(header), "app@web1", "billing@example.org", 1))
	}
	from, r, size, err := outgoing(policy, "app@web1", strings.NewReader(stored), int64(len(stored)))
	if err != nil {
		t.Fatal(err)
	}
	sent, _ := io.ReadAll(r)
	want := "Received: by relayq\r\n\tid x\r\nFrom: billing@example.org\r\nSubject: s\r\n" + body
	if from != "bounces@example.org" || string(sent) != want || size != int64(len(want)) {
		t.Errorf("sent %s, %q (size %d); want bounces@example.org, %q (size %d)", from, sent, size, want, len(want))
	}
	if gotHeader != "Received: by relayq\r\n\tid x\r\nFrom: app@web1\r\nSubject: s\r\n\r\n" {
		t.Errorf("the policy got %q, want the header block and its empty line", gotHeader)
	}
	from, r, size, _ = outgoing(nil, "app@web1", strings.NewReader(stored), int64(len(stored)))
	if sent, _ := io.ReadAll(r); from != "app@web1" || !bytes.Equal(sent, []byte(stored)) || size != int64(len(stored)) {
		t.Errorf("without a policy: %s, %q, %d", from, sent, size)
	}
}
