package transport

import (
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// checkAddress refuses an address that could not be sent as a MAIL FROM or
// RCPT TO path without changing the command: CR, LF and other controls,
// angle brackets and spaces (which would let an address smuggle in ESMTP
// parameters or commands). The empty address is the null sender, valid
// only as From.
func checkAddress(addr string, sender bool) error {
	if addr == "" {
		if sender {
			return nil
		}
		return fmt.Errorf("empty address")
	}
	if i := strings.IndexFunc(addr, badAddressRune); i >= 0 {
		return fmt.Errorf("address %q contains %q", addr, addr[i:i+1])
	}
	return nil
}

func badAddressRune(r rune) bool {
	return r < 0x20 || r == 0x7f || r == ' ' || r == '<' || r == '>'
}

func invalidSender(err error) *LocalError {
	return localError(553, smtp.EnhancedCode{5, 1, 7}, "invalid sender address: %v", err)
}

func invalidRecipient(err error) *LocalError {
	return localError(553, smtp.EnhancedCode{5, 1, 3}, "invalid recipient address: %v", err)
}
