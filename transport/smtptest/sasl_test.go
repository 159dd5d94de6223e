package smtptest

import "testing"

// TestDialogOAuth2Refused: a token that is not the user's gets the error
// challenge, and 535 after the client's answer (an empty line for XOAUTH2,
// %x01 for OAUTHBEARER); the right one is accepted at once.
func TestDialogOAuth2Refused(t *testing.T) {
	srv := NewServer(t, Options{Tokens: map[string]string{"u": "good"}})
	dialog(t, srv,
		"S: 220 ",
		"C: EHLO c",
		"S: 250-",
		"S: 250-PIPELINING",
		"S: 250-8BITMIME",
		"S: 250-ENHANCEDSTATUSCODES",
		"S: 250-SIZE",
		"S: 250 AUTH XOAUTH2 OAUTHBEARER",
		"C: AUTH XOAUTH2 "+b64("user=u\x01auth=Bearer bad\x01\x01"),
		"S: 334 "+b64(xoauth2Refusal),
		"C: ",
		"S: 535 5.7.8",
		"C: AUTH OAUTHBEARER "+b64("n,a=u,\x01auth=Bearer bad\x01\x01"),
		"S: 334 "+b64(oauthBearerRefusal),
		"C: "+b64("\x01"),
		"S: 535 5.7.8",
		"C: AUTH XOAUTH2 "+b64("user=u\x01auth=Bearer good\x01\x01"),
		"S: 235 2.7.0",
	)
}

// TestDialogCRAMMD5 is RFC 2195's exchange with the server's challenge.
func TestDialogCRAMMD5(t *testing.T) {
	srv := NewServer(t, Options{Auth: map[string]string{"tim": "tanstaaftanstaaf"}, AuthMechanisms: []string{"CRAM-MD5"}})
	dialog(t, srv,
		"S: 220 ",
		"C: HELO c",
		"S: 250 ",
		"C: AUTH CRAM-MD5",
		"S: 334 "+b64("<1.0@smtptest.localhost>"),
		"C: "+b64("tim 0000"),
		"S: 535 5.7.8",
	)
}
