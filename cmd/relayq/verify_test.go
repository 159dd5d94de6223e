package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"

	"relayq/transport"
)

// TestVerifyExit maps Verify's outcomes to the exit statuses verify
// documents.
func TestVerifyExit(t *testing.T) {
	reply := func(code int, enh smtp.EnhancedCode) *smtp.SMTPError {
		return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: "scripted"}
	}
	refused550 := &transport.Report{Rcpt: []transport.EnvelopeReply{
		{Address: "a@example.net", Reply: "450 4.2.1 busy"}, {Address: "b@example.net", Reply: "550 5.1.1 no such user"},
	}}
	for _, tc := range []struct {
		name string
		rep  *transport.Report
		err  error
		want int
	}{
		{"ready", &transport.Report{}, nil, exitOK},
		{"connection refused", &transport.Report{}, &transport.Error{Stage: transport.StageDial, Err: syscall.ECONNREFUSED}, exitUnavailable},
		{"certificate", &transport.Report{}, &transport.Error{Stage: transport.StageTLS, Err: errors.New("x509: unknown authority")}, exitUnavailable},
		{"421 greeting", &transport.Report{}, &transport.Error{Stage: transport.StageGreeting, Err: reply(421, smtp.EnhancedCode{4, 3, 2})}, exitTempFail},
		{"554 greeting", &transport.Report{}, &transport.Error{Stage: transport.StageGreeting, Err: reply(554, smtp.EnhancedCodeNotSet)}, exitUnavailable},
		{"535 auth", &transport.Report{}, &transport.Error{Stage: transport.StageAuth, Err: reply(535, smtp.EnhancedCode{5, 7, 8})}, exitNoPerm},
		{"454 auth", &transport.Report{}, &transport.Error{Stage: transport.StageAuth, Err: reply(454, smtp.EnhancedCode{4, 7, 0})}, exitTempFail},
		{"no mechanism", &transport.Report{}, &transport.Error{Stage: transport.StageAuth, Err: fmt.Errorf("%w: x", transport.ErrAuthUnavailable)}, exitConfig},
		{"credentials in clear", &transport.Report{}, &transport.Error{Stage: transport.StageAuth, Err: transport.ErrInsecureAuth}, exitConfig},
		{"550 sender", &transport.Report{}, &transport.Error{Stage: transport.StageMail, Err: reply(550, smtp.EnhancedCode{5, 7, 1})}, exitUnavailable},
		{"451 sender", &transport.Report{}, &transport.Error{Stage: transport.StageMail, Err: reply(451, smtp.EnhancedCode{4, 3, 0})}, exitTempFail},
		{"450 then 550 recipient", refused550, &transport.Error{Stage: transport.StageRcpt, Err: reply(450, smtp.EnhancedCode{4, 2, 1})}, exitUnavailable},
		{"bad address", &transport.Report{}, &transport.Error{Stage: transport.StageMail, Err: &transport.LocalError{Reply: reply(553, smtp.EnhancedCode{5, 1, 7})}}, exitUsage},
	} {
		if got := verifyExit(tc.rep, tc.err); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestRunVerifyRefusesEarly: bad flags and a bad config fail before any
// connection, with EX_USAGE and EX_CONFIG.
func TestRunVerifyRefusesEarly(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[relay]\nmax_connections = \"many\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
		text string
	}{
		{[]string{"--to", "a@example.net,"}, exitUsage, "empty address"},
		{[]string{"extra"}, exitUsage, "unexpected argument"},
		{[]string{"-c", bad}, exitConfig, "max_connections"},
	} {
		var stdout, stderr bytes.Buffer
		env := cmdEnv{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
		got := run(append([]string{"relayq", "verify"}, tc.args...), env)
		if got != tc.want || !strings.Contains(stderr.String(), tc.text) {
			t.Errorf("verify %q: exit %d, stderr %q; want %d and %q", tc.args, got, stderr.String(), tc.want, tc.text)
		}
	}
}
