package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// A message record is read at every Lease and read and rewritten at every
// recorded attempt, inside the committer's loop, so its encoding is on the
// hot path of every message: as JSON it took about 8% of relayq's CPU and
// 351 bytes for one recipient. It is stored compactly instead, like the
// archive record (archive_record.go), in about a third of the bytes:
//
//	messageFormat (1 byte)
//	id, from                                 strings
//	submitter uid                            varint
//	submitter via, addr, user, unit          strings
//	created                                  time
//	size, attempts                           varint
//	flags                                    1 byte (msgHas…, msgUTF8, …)
//	next attempt, held since, requeued       time, each when its flag is set
//	body CRC-32C                             4 bytes big-endian, when msgHasCRC
//	dsn ret, envid                           strings
//	recipients                               uvarint count, then each:
//	  address, relay                         strings
//	  status                                 1 byte (recordStatuses)
//	  attempts                               varint
//	  flags                                  1 byte (rcptHas…)
//	  next attempt, last attempt             time, each when its flag is set
//	  last reply                             reply, when rcptHasReply
//	  notify                                 uvarint count, strings, when rcptHasDSN
//	  orcpt type, orcpt                      strings, when rcptHasDSN
//	history                                  uvarint count, then each attempt:
//	  flags                                  1 byte (attemptHasTime)
//	  time                                   time, when attemptHasTime
//	  relay                                  string
//	  duration                               varint, nanoseconds
//	  transcript                             string
//	  results                                uvarint count, then each:
//	    recipients                           uvarint count, strings
//	    status                               1 byte (recordStatuses)
//	    has reply                            1 byte, 0 or 1
//	    reply                                reply, when it has one
//
// where a string is its length (uvarint) and its bytes, a time is a
// varint of Unix nanoseconds, and a reply is its code (varint), enhanced
// code and stage (strings) and lines (uvarint count, strings). A record
// that starts with '{' is JSON, as written before; decodeMessage reads
// both. A message the compact form cannot hold exactly (a time outside
// Unix nanoseconds' range, a status no writer uses) is still written as
// JSON. The decoder refuses what it cannot account for (a byte past the
// end, an unknown code or flag, bytes left over), so damage is reported
// as such and the record counted damaged.

// messageFormat opens a compact message record.
const messageFormat = 1

var recordStatuses = []Status{StatusQueued, StatusDeferred, StatusDelivered, StatusDead, StatusUncertain}

// Message flags.
const (
	msgUTF8 = 1 << iota
	msgEightBit
	msgHeld
	msgHasNext
	msgHasHeldSince
	msgHasRequeued
	msgHasCRC
	msgFlags = msgUTF8 | msgEightBit | msgHeld | msgHasNext | msgHasHeldSince | msgHasRequeued | msgHasCRC
)

// Recipient flags.
const (
	rcptHasNext = 1 << iota
	rcptHasLast
	rcptHasReply
	rcptHasDSN
	rcptFlags = rcptHasNext | rcptHasLast | rcptHasReply | rcptHasDSN
)

// Attempt flags.
const (
	attemptHasTime = 1 << iota
	attemptFlags   = attemptHasTime
)

// encodeMessage is the stored form of m: compact, or JSON for a message
// the compact form cannot hold exactly. LeasedUntil and Damaged are never
// stored.
func encodeMessage(m *Message) ([]byte, error) {
	if v, ok := encodeCompactMessage(m); ok {
		return v, nil
	}
	s := *m
	s.LeasedUntil, s.Damaged = time.Time{}, ""
	return json.Marshal(&s)
}

// recordWriter builds a compact record; ok turns false at the first value
// the form cannot hold exactly.
type recordWriter struct {
	v  []byte
	ok bool
}

func (w *recordWriter) string(s string) { w.v = appendString(w.v, s) }
func (w *recordWriter) varint(n int64)  { w.v = binary.AppendVarint(w.v, n) }
func (w *recordWriter) uvarint(n int)   { w.v = binary.AppendUvarint(w.v, uint64(n)) }
func (w *recordWriter) byte(b byte)     { w.v = append(w.v, b) }

func (w *recordWriter) time(t time.Time) {
	n := t.UnixNano()
	if !time.Unix(0, n).Equal(t) {
		w.ok = false // outside what UnixNano holds
	}
	w.varint(n)
}

func (w *recordWriter) status(s Status) {
	c := codeOf(recordStatuses, s)
	if int(c) >= len(recordStatuses) {
		w.ok = false
	}
	w.byte(c)
}

func (w *recordWriter) strings(ss []string) {
	w.uvarint(len(ss))
	for _, s := range ss {
		w.string(s)
	}
}

func (w *recordWriter) reply(r *Reply) {
	w.varint(int64(r.Code))
	w.string(r.Enhanced)
	w.string(r.Stage)
	w.strings(r.Lines)
}

// encodeCompactMessage is the compact form of m, and false when it
// cannot hold m exactly.
func encodeCompactMessage(m *Message) ([]byte, bool) {
	w := &recordWriter{v: make([]byte, 0, 160), ok: true}
	w.byte(messageFormat)
	w.string(m.ID)
	w.string(m.From)
	w.varint(int64(m.Submitter.UID))
	for _, s := range []string{m.Submitter.Via, m.Submitter.Addr, m.Submitter.User, m.Submitter.Unit} {
		w.string(s)
	}
	w.time(m.Created)
	w.varint(m.Size)
	w.varint(int64(m.Attempts))
	var flags byte
	for _, f := range []struct {
		set  bool
		flag byte
	}{
		{m.UTF8, msgUTF8}, {m.EightBit, msgEightBit}, {m.Held, msgHeld},
		{!m.NextAttempt.IsZero(), msgHasNext}, {!m.HeldSince.IsZero(), msgHasHeldSince},
		{!m.Requeued.IsZero(), msgHasRequeued}, {m.BodyCRC32C != nil, msgHasCRC},
	} {
		if f.set {
			flags |= f.flag
		}
	}
	w.byte(flags)
	for _, t := range []time.Time{m.NextAttempt, m.HeldSince, m.Requeued} {
		if !t.IsZero() {
			w.time(t)
		}
	}
	if m.BodyCRC32C != nil {
		w.v = binary.BigEndian.AppendUint32(w.v, *m.BodyCRC32C)
	}
	w.string(m.DSN.Return)
	w.string(m.DSN.EnvelopeID)
	w.uvarint(len(m.Recipients))
	for i := range m.Recipients {
		encodeRecipient(w, &m.Recipients[i])
	}
	w.uvarint(len(m.History))
	for i := range m.History {
		encodeAttempt(w, &m.History[i])
	}
	return w.v, w.ok
}

func encodeRecipient(w *recordWriter, r *Recipient) {
	w.string(r.Address)
	w.string(r.Relay)
	w.status(r.Status)
	w.varint(int64(r.Attempts))
	var flags byte
	if !r.NextAttempt.IsZero() {
		flags |= rcptHasNext
	}
	if !r.LastAttempt.IsZero() {
		flags |= rcptHasLast
	}
	if r.LastReply != nil {
		flags |= rcptHasReply
	}
	if !r.DSN.IsZero() {
		flags |= rcptHasDSN
	}
	w.byte(flags)
	if flags&rcptHasNext != 0 {
		w.time(r.NextAttempt)
	}
	if flags&rcptHasLast != 0 {
		w.time(r.LastAttempt)
	}
	if r.LastReply != nil {
		w.reply(r.LastReply)
	}
	if flags&rcptHasDSN != 0 {
		w.strings(r.DSN.Notify)
		w.string(r.DSN.OrigType)
		w.string(r.DSN.Orig)
	}
}

func encodeAttempt(w *recordWriter, a *Attempt) {
	if a.Time.IsZero() {
		w.byte(0)
	} else {
		w.byte(attemptHasTime)
		w.time(a.Time)
	}
	w.string(a.Relay)
	w.varint(int64(a.Duration))
	w.string(a.Transcript)
	w.uvarint(len(a.Results))
	for _, r := range a.Results {
		w.strings(r.Recipients)
		w.status(r.Status)
		if r.Reply == nil {
			w.byte(0)
			continue
		}
		w.byte(1)
		w.reply(r.Reply)
	}
}

// decodeMessage reads a stored record, compact or JSON. Records carry no
// lease (lease.go); one a file from before kept is ignored here.
func decodeMessage(v []byte) (*Message, error) {
	if len(v) > 0 && v[0] == '{' {
		m := &Message{}
		if err := json.Unmarshal(v, m); err != nil {
			return nil, err
		}
		m.LeasedUntil, m.Damaged = time.Time{}, ""
		return m, nil
	}
	if len(v) == 0 || v[0] != messageFormat {
		return nil, errors.New("not a message record")
	}
	d := &recordReader{v: v[1:]}
	m := &Message{ID: d.string(), From: d.string()}
	m.Submitter.UID = int(d.varint())
	m.Submitter.Via, m.Submitter.Addr, m.Submitter.User, m.Submitter.Unit = d.string(), d.string(), d.string(), d.string()
	m.Created = d.time()
	m.Size = d.varint()
	m.Attempts = int(d.varint())
	flags := d.byte()
	if flags&^msgFlags != 0 {
		d.fail("unknown flags")
	}
	m.UTF8, m.EightBit, m.Held = flags&msgUTF8 != 0, flags&msgEightBit != 0, flags&msgHeld != 0
	for _, f := range []struct {
		flag byte
		t    *time.Time
	}{{msgHasNext, &m.NextAttempt}, {msgHasHeldSince, &m.HeldSince}, {msgHasRequeued, &m.Requeued}} {
		if flags&f.flag != 0 {
			*f.t = d.time()
		}
	}
	if flags&msgHasCRC != 0 {
		sum := d.uint32()
		m.BodyCRC32C = &sum
	}
	m.DSN.Return, m.DSN.EnvelopeID = d.string(), d.string()
	if n := d.count(); n > 0 {
		m.Recipients = make([]Recipient, n)
		for i := range m.Recipients {
			decodeRecipient(d, &m.Recipients[i])
		}
	}
	if n := d.count(); n > 0 {
		m.History = make([]Attempt, n)
		for i := range m.History {
			decodeAttempt(d, &m.History[i])
		}
	}
	if d.err == nil && len(d.v) > 0 {
		d.fail("bytes left over")
	}
	if d.err != nil {
		return nil, fmt.Errorf("message record: %w", d.err)
	}
	return m, nil
}

func decodeRecipient(d *recordReader, r *Recipient) {
	r.Address, r.Relay = d.string(), d.string()
	r.Status = codeFor(d, recordStatuses)
	r.Attempts = int(d.varint())
	flags := d.byte()
	if flags&^rcptFlags != 0 {
		d.fail("unknown recipient flags")
	}
	if flags&rcptHasNext != 0 {
		r.NextAttempt = d.time()
	}
	if flags&rcptHasLast != 0 {
		r.LastAttempt = d.time()
	}
	if flags&rcptHasReply != 0 {
		r.LastReply = d.reply()
	}
	if flags&rcptHasDSN != 0 {
		r.DSN.Notify = d.strings()
		r.DSN.OrigType, r.DSN.Orig = d.string(), d.string()
	}
}

func decodeAttempt(d *recordReader, a *Attempt) {
	flags := d.byte()
	if flags&^attemptFlags != 0 {
		d.fail("unknown attempt flags")
	}
	if flags&attemptHasTime != 0 {
		a.Time = d.time()
	}
	a.Relay = d.string()
	a.Duration = time.Duration(d.varint())
	a.Transcript = d.string()
	if n := d.count(); n > 0 {
		a.Results = make([]AttemptResult, n)
		for i := range a.Results {
			r := &a.Results[i]
			r.Recipients = d.strings()
			r.Status = codeFor(d, recordStatuses)
			switch d.byte() {
			case 0:
			case 1:
				r.Reply = d.reply()
			default:
				d.fail("bad reply mark")
			}
		}
	}
}

// count reads a count of items that take a byte each at least: one larger
// than the bytes left is damage, and reads as 0.
func (d *recordReader) count() int {
	n := d.uvarint()
	if n > uint64(len(d.v)) {
		d.fail("bad count")
		return 0
	}
	return int(n)
}

func (d *recordReader) strings() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.string()
	}
	return ss
}

func (d *recordReader) time() time.Time {
	return time.Unix(0, d.varint())
}

func (d *recordReader) uint32() uint32 {
	if len(d.v) < 4 {
		d.fail("truncated")
		return 0
	}
	n := binary.BigEndian.Uint32(d.v)
	d.v = d.v[4:]
	return n
}

func (d *recordReader) reply() *Reply {
	return &Reply{Code: int(d.varint()), Enhanced: d.string(), Stage: d.string(), Lines: d.strings()}
}
