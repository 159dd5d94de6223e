package tests

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// End-to-end tests of the two halves of issue 12 together: aliases and
// qualification at intake, routes and their own sender policies at
// delivery, each with two scripted relays.

// asDryRun is how `relayq rewrite --dry-run` prints the part a relay got:
// its route and relays, its envelope and its header, less the Received
// line relayq puts first (the dry run has none).
func asDryRun(route, relays string, got smtptest.Received) string {
	header, _, _ := strings.Cut(string(got.Body), "\r\n\r\n")
	_, header, _ = strings.Cut(header, "\r\n\t") // the Received line and its continuation
	_, header, _ = strings.Cut(header, "\r\n")
	var b strings.Builder
	fmt.Fprintf(&b, "== route %q: relays %s\n", route, relays)
	fmt.Fprintf(&b, "MAIL FROM:<%s>\n", got.From)
	for _, r := range got.To {
		fmt.Fprintf(&b, "RCPT TO:<%s>\n", r)
	}
	fmt.Fprintf(&b, "\n%s\n\n", strings.ReplaceAll(header, "\r\n", "\n"))
	return b.String()
}

// bodyOf is a message's body, after its header.
func bodyOf(got smtptest.Received) string {
	_, body, _ := strings.Cut(string(got.Body), "\r\n\r\n")
	return body
}

// TestRoutePolicySplitAndDryRun: `relayq sendmail -f www-data -F "Web
// App"` → relayq (unix socket) → relay A (the default route, the global
// sender policy) and relay B (route "org" for example.org, its own sender
// policy). One message to a recipient on each: A gets MAIL FROM the global
// envelope_from and From qualified; B gets the route's MAIL FROM, its From
// address (the name kept) and the original address in Reply-To. Both get
// the same body bytes; `queue status` reports one delivered message; and
// `relayq rewrite --dry-run` printed exactly what each relay received.
func TestRoutePolicySplitAndDryRun(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{})
	b := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, a, onVM, func(s settings) {
		s.set("rewrite", "envelope_from", `"noreply@example.com"`)
		addRelay(s, "a", "b", relayURL(b, false))
		addRoute(s, "a", `name = "org"`, `recipient_domain = "example.org"`, `relays = ["b", "default"]`,
			`envelope_from = "bounces@example.org"`, `envelope_from_when = "always"`,
			`from_header = "billing@example.org"`, `from_header_when = "always"`, `from_to_reply_to = true`)
	})
	msg := []byte("Subject: invoice 7\nDate: Mon, 7 Dec 2026 06:00:00 +0000\nMessage-ID: <inv7@example.net>\n\nTotal: 12 EUR\n")
	args := []string{"-f", "www-data", "-F", "Web App", "x@example.net", "y@example.org"}
	dry := runCmd(relayqBin, msg, append([]string{"rewrite", "--dry-run", "-c", d.config}, args...)...)
	if dry.code != 0 {
		t.Fatalf("rewrite --dry-run: %v", dry)
	}
	if res := d.sendmail(msg, args...); res.code != 0 {
		t.Fatalf("sendmail: %v", res)
	}
	gotA := a.WaitMessages(t, 1, 30*time.Second)[0]
	gotB := b.WaitMessages(t, 1, 30*time.Second)[0]
	if gotA.From != "noreply@example.com" || !slices.Equal(gotA.To, []string{"x@example.net"}) {
		t.Errorf("A got %s → %v, want noreply@example.com → x@example.net (global policy)", gotA.From, gotA.To)
	}
	if gotB.From != "bounces@example.org" || !slices.Equal(gotB.To, []string{"y@example.org"}) {
		t.Errorf("B got %s → %v, want bounces@example.org → y@example.org (the route's policy)", gotB.From, gotB.To)
	}
	hA, hB := string(gotA.Body), string(gotB.Body)
	if !strings.Contains(hA, "\r\nFrom: \"Web App\" <www-data@web1.example.net>\r\n") || strings.Contains(hA, "Reply-To") {
		t.Errorf("A's header: want From qualified, no Reply-To:\n%s", hA)
	}
	if !strings.Contains(hB, "\r\nFrom: \"Web App\" <billing@example.org>\r\n") || !strings.Contains(hB, "\r\nReply-To: www-data@web1.example.net\r\n") {
		t.Errorf("B's header: want the route's From with the name kept, the original in Reply-To:\n%s", hB)
	}
	if bodyOf(gotA) != "Total: 12 EUR\r\n" || bodyOf(gotB) != bodyOf(gotA) {
		t.Errorf("bodies changed: A %q, B %q", bodyOf(gotA), bodyOf(gotB))
	}
	for _, want := range []string{asDryRun("default", "default", gotA), asDryRun("org", "b, default", gotB)} {
		if !strings.Contains(dry.stdout, want) {
			t.Errorf("dry run printed\n%s\nbut a relay got\n%s", dry.stdout, want)
		}
	}
	d.waitQueueEmpty(t, 15*time.Second)
	acc := d.logRecords("accepted")
	if len(acc) != 1 {
		t.Fatalf("%d accepted log lines, want 1", len(acc))
	}
	st := d.messageStatus(t, acc[0]["id"])
	relays := map[string]string{}
	for _, r := range st.Recipients {
		relays[r.Address] = r.Relay + " " + r.Status
	}
	if st.State != "delivered" || len(st.Recipients) != 2 || !strings.HasPrefix(relays["x@example.net"], "default (") ||
		!strings.HasPrefix(relays["y@example.org"], "b (") || !strings.HasSuffix(relays["y@example.org"], " delivered") {
		t.Errorf("queue status %+v, want one delivered message, each recipient with its relay", st)
	}
}

// TestCronRootAliasThroughRoute: cron's exact command line `sendmail
// -FCronDaemon -i -B8BITMIME -oem root` → relayq (unix socket): root's
// alias is ops@example.com, and a route sends example.com to relay B
// while the default is relay A. B gets it, to the alias, MAIL FROM and
// From qualified with [rewrite] domain (cron's name kept); A gets nothing.
func TestCronRootAliasThroughRoute(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{})
	b := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, a, onVM, func(s settings) {
		s.set("aliases", "root", `"ops@example.com"`)
		addRelay(s, "a", "b", relayURL(b, false))
		addRoute(s, "a", `name = "ours"`, `recipient_domain = "example.com"`, `relays = ["b"]`)
	})
	if res := d.sendmail([]byte(cronMessage), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"); res.code != 0 {
		t.Fatalf("sendmail: %v", res)
	}
	got := b.WaitMessages(t, 1, 30*time.Second)[0]
	if !slices.Equal(got.To, []string{"ops@example.com"}) || got.From != "root@web1.example.net" {
		t.Errorf("B got %s → %v, want root@web1.example.net → ops@example.com", got.From, got.To)
	}
	if h := string(got.Body); !strings.Contains(h, "\r\nFrom: \"Cron Daemon\" <root@web1.example.net>\r\n") || bodyOf(got) != "backup: 3 files\r\n" {
		t.Errorf("B's message: From not qualified with cron's name, or body changed:\n%s", h)
	}
	d.waitQueueEmpty(t, 15*time.Second)
	if n := len(a.Messages()); n != 0 {
		t.Errorf("A (the default route) got %d messages, want 0", n)
	}
}

// TestSenderRouteSeesTheOriginalSender: SMTP on the unix socket → relayq
// with [rewrite] envelope_from = noreply@example.com for every sender, and
// a route for the sender *@billing.example.com to relay B (the default is
// relay A). The billing message goes to B, with MAIL FROM noreply: the
// route matches the sender the program gave, and the policy applies on
// the way out.
func TestSenderRouteSeesTheOriginalSender(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{})
	b := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, a, onVM, func(s settings) {
		s.set("rewrite", "envelope_from", `"noreply@example.com"`)
		s.set("rewrite", "envelope_from_when", `"always"`)
		addRelay(s, "a", "b", relayURL(b, false))
		addRoute(s, "a", `name = "billing"`, `sender = "*@billing.example.com"`, `relays = ["b"]`)
	})
	billing, to := "invoices@billing.example.com", []string{"customer@example.net"}
	d.submit(t, billing, to, newMessage(1, billing, to, 3))
	got := b.WaitMessages(t, 1, 30*time.Second)[0]
	if got.From != "noreply@example.com" || !slices.Equal(got.To, to) {
		t.Errorf("B got %s → %v, want noreply@example.com → %v", got.From, got.To, to)
	}
	d.waitQueueEmpty(t, 15*time.Second)
	if n := len(a.Messages()); n != 0 {
		t.Errorf("A got %d messages, want 0 (the billing route goes to B)", n)
	}
}

// workedExample is the two-provider example of config.toml.example,
// uncommented, with its relays' urls pointed at a and b and their
// credentials left out.
func workedExample(t *testing.T, a, b *smtptest.Server) string {
	t.Helper()
	data, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start, end := strings.Index(text, "#   [[relays]]"), strings.Index(text, "\n\n[queue]")
	if start < 0 || end < start {
		t.Fatal("worked example not found in config.toml.example")
	}
	var lines []string
	for line := range strings.Lines(text[start:end]) {
		line = strings.TrimPrefix(strings.TrimPrefix(strings.TrimRight(line, "\n"), "#"), "   ")
		switch {
		case strings.HasPrefix(line, "auth."):
			continue
		case strings.Contains(line, "provider-a.example"):
			line = "url = " + tomlString(relayURL(a, false))
		case strings.Contains(line, "provider-b.example"):
			line = "url = " + tomlString(relayURL(b, false))
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// TestWorkedExampleEndToEnd: config.toml.example's two-provider example,
// as written (urls pointed at two smtptest relays, no credentials). cron's
// `sendmail -FCronDaemon -i -B8BITMIME -oem root` → provider A, to root's
// alias, MAIL FROM [rewrite]'s envelope_from; the billing application's
// `sendmail -f billing` → provider B, with the billing route's own MAIL
// FROM, From and Reply-To. And `relayq rewrite --dry-run` printed what B got.
func TestWorkedExampleEndToEnd(t *testing.T) {
	a := smtptest.NewServer(t, smtptest.Options{})
	b := smtptest.NewServer(t, smtptest.Options{})
	d := startDaemon(t, a, func(s settings) { s.set(rawSection, "1-example", workedExample(t, a, b)) })
	if res := d.sendmail([]byte(cronMessage), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"); res.code != 0 {
		t.Fatalf("cron's sendmail: %v", res)
	}
	invoice := []byte("Subject: invoice 8\nDate: Mon, 7 Dec 2026 06:00:00 +0000\nMessage-ID: <inv8@example.com>\n\nTotal: 3 EUR\n")
	args := []string{"-f", "billing", "-F", "Billing", "customer@example.net"}
	dry := runCmd(relayqBin, invoice, append([]string{"rewrite", "--dry-run", "-c", d.config}, args...)...)
	if res := d.sendmail(invoice, args...); res.code != 0 || dry.code != 0 {
		t.Fatalf("billing's sendmail: %v; dry run: %v", res, dry)
	}
	cron := a.WaitMessages(t, 1, 30*time.Second)[0]
	if cron.From != "noreply@example.com" || !slices.Equal(cron.To, []string{"ops@example.com"}) ||
		!strings.Contains(string(cron.Body), "\r\nFrom: \"Cron Daemon\" <root@example.com>\r\n") {
		t.Errorf("provider A got %s → %v:\n%s\nwant noreply@example.com → ops@example.com, From qualified", cron.From, cron.To, cron.Body)
	}
	bill := b.WaitMessages(t, 1, 30*time.Second)[0]
	h := string(bill.Body)
	if bill.From != "bounces@billing.example.com" || !slices.Equal(bill.To, []string{"customer@example.net"}) ||
		!strings.Contains(h, "\r\nFrom: \"Billing\" <invoices@billing.example.com>\r\n") || !strings.Contains(h, "\r\nReply-To: billing@example.com\r\n") {
		t.Errorf("provider B got %s → %v:\n%s\nwant the billing route's sender policy", bill.From, bill.To, h)
	}
	if want := asDryRun("billing", "provider-b, provider-a", bill); dry.stdout != want+fmt.Sprintf("(body: %d bytes, sent as they are)\n", len(bodyOf(bill))) {
		t.Errorf("dry run printed\n%s\nprovider B got\n%s", dry.stdout, want)
	}
	d.waitQueueEmpty(t, 15*time.Second)
	if len(a.Messages()) != 1 || len(b.Messages()) != 1 {
		t.Errorf("A got %d messages, B %d; want one each", len(a.Messages()), len(b.Messages()))
	}
}
