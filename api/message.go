package api

import (
	"encoding/json"
	"errors"
	"strings"
)

// Message is the JSON body of POST /v1/messages, in Nodemailer's shape.
// Address fields take a string ("a@x, B <b@y>") or a list of strings.
type Message struct {
	From        string            `json:"from"`
	To          addressList       `json:"to"`
	Cc          addressList       `json:"cc"`
	Bcc         addressList       `json:"bcc"`
	ReplyTo     addressList       `json:"reply_to"`
	Subject     string            `json:"subject"`
	Text        *string           `json:"text"`
	HTML        *string           `json:"html"`
	Headers     map[string]string `json:"headers"`
	Attachments []Attachment      `json:"attachments"`
	Envelope    *Envelope         `json:"envelope"`
}

// Envelope overrides MAIL FROM and RCPT TO (Nodemailer's envelope).
type Envelope struct {
	From string      `json:"from"`
	To   addressList `json:"to"`
}

// Attachment is one attached (or, with CID, inline) part. Its content is
// exactly one of Content, Path (a local file, under Options.FileRoots)
// and Href (an http or https URL).
type Attachment struct {
	Filename    string  `json:"filename"`
	Content     *string `json:"content"`
	Encoding    string  `json:"encoding"` // "base64": Content is base64; else text
	ContentType string  `json:"content_type"`
	Path        string  `json:"path"`
	Href        string  `json:"href"`
	CID         string  `json:"cid"`
}

// addressList is a list of addresses given as a string or an array.
type addressList []string

func (l *addressList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		if strings.TrimSpace(one) != "" {
			*l = addressList{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("want a string or a list of strings")
	}
	*l = many
	return nil
}
