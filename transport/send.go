package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-smtp"
)

// Send delivers m in one transaction. It returns a non-nil error (an
// *Error) when the transaction failed as a whole; then no recipient was
// delivered. Otherwise the Result holds each recipient's outcome; if every
// recipient was refused at RCPT, no message was taken (no DATA; or, to a
// relay that offers PIPELINING, a pipelined DATA that the relay refuses:
// pipeline.go; or, with CHUNKING as well, a BDAT chunk that the relay
// refuses and drops: chunking.go).
//
// A connection taken from the pool that turns out to be dead before the
// transaction started (EOF or 421 at MAIL) is replaced at once, within the
// same Send: nothing was sent on it, so that is not a failed attempt. So
// is one on which the relay refuses MAIL for now (any other 4xx): relays
// limit the messages of a session and then refuse every MAIL on a session
// they keep open (OpenSMTPD's `smtp limit max-mails`: "452 4.5.3 Too many
// recipients: Too many messages sent"); a refusal that is not about the
// session comes again on the new connection, and that one counts.
func (t *Transport) Send(ctx context.Context, m *Message) (*Result, error) {
	tx, err := newTransaction(m)
	if err != nil {
		return nil, err
	}
	if len(tx.rcpts) == 0 {
		return tx.res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Stage: StageDial, Err: err}
	}
	// Room in the rate window first, then a connection: a Send waiting
	// for the rate holds no connection.
	room, err := t.rate.wait(ctx)
	if err != nil {
		return nil, &Error{Stage: StageDial, Err: fmt.Errorf("waiting for the rate limit: %w", err)}
	}
	tx.room = room
	defer room.cancel() // when MAIL was never sent
	c, err := t.acquire(ctx)
	if err != nil {
		return nil, err
	}
	healthy, err := t.run(ctx, c, tx)
	if why := spentConn(err); why != "" && c.reused && ctx.Err() == nil {
		t.log.Debug("pooled relay connection cannot take the message; reconnecting", "why", why, "conn", c.id, "messages", c.sent-1, "err", err)
		t.close(c, healthy) // QUIT when the session is still in step
		spent := err
		if c, err = t.dial(ctx); err != nil {
			t.freeSlot()
			return nil, err
		}
		c.tr.addString(dirNote, "a pooled connection "+why+" ("+spent.Error()+"); this new one replaces it")
		healthy, err = t.run(ctx, c, tx)
	}
	// Taken before release: once back in the pool, c is another Send's.
	transcript := c.tr.take()
	t.release(c, healthy)
	if err != nil {
		err = t.cleanErr(err)
		var te *Error
		if errors.As(err, &te) {
			te.Transcript = transcript
		}
		return nil, err
	}
	tx.copyDuplicates()
	t.cleanResult(tx.res)
	tx.res.Transcript = transcript
	return tx.res, nil
}

// spentConn says why a pooled connection cannot take the message although
// nothing of it was sent, or "" when that is not what happened: the
// transaction failed at MAIL because the session was gone (I/O error or
// 421), or the relay refused MAIL for now (another 4xx) and may go on
// refusing it on this session whatever the message.
func spentConn(err error) string {
	var te *Error
	if !errors.As(err, &te) || te.Stage != StageMail {
		return ""
	}
	var se *smtp.SMTPError
	switch {
	case !errors.As(te.Err, &se) || se.Code == 421:
		return "turned out closed"
	case se.Code/100 == 4:
		return "refused MAIL for now"
	}
	return ""
}

// transaction is one Send's state.
type transaction struct {
	msg   *Message
	res   *Result
	rcpts []int          // indexes of the recipients to send, unique addresses
	first map[string]int // address → index of its first occurrence; nil with one recipient
	room  *reservation   // room in the rate window, used at MAIL; nil without a limit
}

// newTransaction checks the envelope: an invalid sender fails the Send, an
// invalid recipient gets a local 553 and is left out.
func newTransaction(m *Message) (*transaction, error) {
	if err := checkAddress(m.From, true); err != nil {
		return nil, &Error{Stage: StageMail, Err: invalidSender(err)}
	}
	if err := checkDSN(m); err != nil {
		return nil, &Error{Stage: StageMail, Err: err}
	}
	tx := &transaction{msg: m, res: &Result{Recipients: make([]RecipientResult, len(m.Recipients))}}
	if len(m.Recipients) > 1 { // one (most mail) has no duplicate to find
		tx.first = make(map[string]int, len(m.Recipients))
	}
	for i, addr := range m.Recipients {
		tx.res.Recipients[i].Address = addr
		if err := checkAddress(addr, false); err != nil {
			tx.res.Recipients[i].Err = invalidRecipient(err)
			continue
		}
		if tx.first == nil {
			tx.rcpts = append(tx.rcpts, i)
		} else if _, dup := tx.first[addr]; !dup {
			tx.first[addr] = i
			tx.rcpts = append(tx.rcpts, i)
		}
	}
	return tx, nil
}

// copyDuplicates gives a repeated address the result of its first
// occurrence (go-smtp keys LMTP replies by address, so each goes once).
func (tx *transaction) copyDuplicates() {
	for i, r := range tx.res.Recipients {
		if j, ok := tx.first[r.Address]; ok && j != i {
			tx.res.Recipients[i].Err, tx.res.Recipients[i].Reply = tx.res.Recipients[j].Err, tx.res.Recipients[j].Reply
		}
	}
}

// run runs the transaction on c. healthy says whether c can carry another
// one.
func (t *Transport) run(ctx context.Context, c *conn, tx *transaction) (healthy bool, err error) {
	unbind := c.io.bind(ctx)
	defer unbind()
	healthy, err = t.transact(c, tx)
	if err != nil {
		var te *Error
		if errors.As(err, &te) {
			te.Err = ctxCause(ctx, te.Err)
		}
	}
	return healthy && !c.io.aborted.Load(), err
}

func (t *Transport) transact(c *conn, tx *transaction) (bool, error) {
	m := tx.msg
	if err := t.checkRelay(c, m); err != nil {
		return true, &Error{Stage: StageMail, Err: err}
	}
	c.sent++
	t.noteDSN(c, m)
	tx.room.use()
	if t.pipelines(c) {
		return t.transactPipelined(c, tx) // pipeline.go
	}
	c.cc.sevenBit = !m.EightBit // BODY=8BITMIME only for 8-bit content (clientconn.go)
	if err := c.client.Mail(m.From, mailOptions(m)); err != nil {
		return t.refused(c, &Error{Stage: StageMail, Err: err})
	}
	var accepted []int
	for _, i := range tx.rcpts {
		err := c.client.Rcpt(m.Recipients[i], rcptOptions(m, i))
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case errors.As(err, &se) && se.Code != 421:
			tx.res.Recipients[i].Err = se
		default:
			return false, &Error{Stage: StageRcpt, Err: err}
		}
	}
	if len(accepted) == 0 {
		return c.client.Reset() == nil, nil
	}
	w, err := c.client.Data()
	if err != nil {
		return t.refused(c, &Error{Stage: StageData, Err: err})
	}
	if err := t.writeBody(c, m.Body); err != nil {
		return false, err
	}
	if t.opts.LMTP {
		return t.finishLMTP(c, w, tx, accepted)
	}
	return t.finishSMTP(c, w, tx, accepted)
}

// checkRelay refuses, before anything is sent, a message the relay said in
// its EHLO reply it cannot take.
func (t *Transport) checkRelay(c *conn, m *Message) error {
	if limit, ok := c.client.MaxMessageSize(); ok && limit > 0 && m.Size > int64(limit) {
		return localError(552, smtp.EnhancedCode{5, 3, 4},
			"message size %d exceeds the relay's SIZE limit %d", m.Size, limit)
	}
	if ok, _ := c.client.Extension("SMTPUTF8"); m.UTF8 && !ok {
		return localError(553, smtp.EnhancedCode{5, 6, 7},
			"the message needs SMTPUTF8 (non-ASCII addresses or headers) and the relay does not offer it; not sent, so as not to corrupt it")
	}
	if ok, _ := c.client.Extension("8BITMIME"); m.EightBit && !ok {
		return localError(554, smtp.EnhancedCode{5, 6, 3},
			"the message has 8-bit content and the relay does not offer 8BITMIME; not sent, so as not to corrupt it")
	}
	return nil
}

// refused handles an error reply before the body: a plain refusal leaves
// the session usable after RSET; a 421 or an I/O error does not.
func (t *Transport) refused(c *conn, e *Error) (bool, error) {
	var se *smtp.SMTPError
	if !errors.As(e.Err, &se) || se.Code == 421 {
		return false, e
	}
	return c.client.Reset() == nil, e
}

// writeBody streams the body with DataTimeout per write, straight to the
// connection under go-smtp's DataCommand w (body.go), which then writes the
// final dot. A failure here leaves the session mid-DATA: the connection
// cannot be reused.
func (t *Transport) writeBody(c *conn, body io.Reader) error {
	c.io.setWriteTimeout(t.opts.DataTimeout)
	if body == nil {
		return nil
	}
	if err := writeBody(c.cc.Conn, body, nil); err != nil {
		return &Error{Stage: StageData, Err: err}
	}
	return nil
}

func (t *Transport) finishSMTP(c *conn, w *smtp.DataCommand, tx *transaction, accepted []int) (bool, error) {
	resp, err := w.CloseWithResponse()
	c.io.setWriteTimeout(t.opts.CommandTimeout)
	if err != nil {
		return false, t.dotError(c, err)
	}
	for _, i := range accepted {
		tx.res.Recipients[i].Reply = resp.StatusText
	}
	return true, nil
}

// dotError classifies a failure to finish the body: the final dot not
// written (StageData), a reply to it (StageDot), or no reply, or one that
// is not a valid reply (AfterDot: the relay may have the message).
func (t *Transport) dotError(c *conn, err error) *Error {
	var se *smtp.SMTPError
	switch {
	case c.io.writeFailed.Load():
		return &Error{Stage: StageData, Err: err}
	case errors.As(err, &se) && !finalReply(se.Code):
		return malformedReply(se)
	case errors.As(err, &se):
		return &Error{Stage: StageDot, Err: se}
	}
	return &Error{Stage: StageDot, Err: err, AfterDot: true}
}

// finishLMTP maps the per-recipient replies after the dot back to the
// recipients. If the connection broke part-way, the recipients already
// answered keep their replies and the others get an AfterDot *Error; only
// if no reply came at all does the transaction fail as a whole.
func (t *Transport) finishLMTP(c *conn, w *smtp.DataCommand, tx *transaction, accepted []int) (bool, error) {
	resp, err := w.CloseWithLMTPResponse()
	c.io.setWriteTimeout(t.opts.CommandTimeout)
	var refused smtp.LMTPDataError
	errors.As(err, &refused)
	ioErr := lmtpIOError(err)
	if ioErr != nil && len(resp) == 0 && len(refused) == 0 {
		return false, t.dotError(c, ioErr)
	}
	healthy := ioErr == nil
	for _, i := range accepted {
		addr := tx.msg.Recipients[i]
		r := &tx.res.Recipients[i]
		if ok, found := resp[addr]; found {
			r.Reply = ok.StatusText
		} else if se, found := refused[addr]; found && finalReply(se.Code) {
			r.Err = se
		} else if found {
			r.Err, healthy = malformedReply(se), false
		} else {
			r.Err = &Error{Stage: StageDot, Err: ioErr, AfterDot: true}
		}
	}
	if !healthy {
		return false, nil
	}
	// go-smtp ≥ v0.25.1 forgets the recipients at the next MAIL (#308);
	// RSET anyway, so that no older behaviour can file replies against
	// the wrong message.
	return c.client.Reset() == nil, nil
}

// lmtpIOError extracts from CloseWithLMTPResponse's error the part that is
// not a per-recipient refusal: the I/O error that cut the replies short.
func lmtpIOError(err error) error {
	switch e := err.(type) {
	case nil, smtp.LMTPDataError:
		return nil
	case interface{ Unwrap() []error }: // errors.Join(ioErr, refusals)
		for _, part := range e.Unwrap() {
			if _, refusal := part.(smtp.LMTPDataError); !refusal {
				return part
			}
		}
		return nil
	}
	return err
}
