package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// An archive record is kept for every message that left the queue, for a
// week by default, so at a million messages a day the history outweighs
// the queue itself. It is stored compactly rather than as JSON: 160 bytes
// for a delivered message to one recipient, which took 537 as JSON, most
// of the difference field names and RFC 3339 times:
//
//	archiveFormat (1 byte)
//	from, submitter via, addr, user, unit   strings
//	submitter uid                           varint
//	created                                 varint, Unix nanoseconds
//	size, attempts                          uvarint
//	left − created                          varint, nanoseconds
//	fate                                    1 byte (archiveFates)
//	recipients                              uvarint count, then each:
//	  address, relay                        strings
//	  status                                1 byte (archiveStatuses)
//	  attempts                              uvarint
//	  flags                                 1 byte: hasTime, hasReply, hasRelayID
//	  time − created                        varint, when hasTime
//	  reply code                            uvarint, when hasReply
//	  reply enhanced, stage                 strings, when hasReply
//	  reply lines                           uvarint count, strings, when hasReply
//	  relay ID                              string, when hasRelayID
//
// where a string is its length (uvarint) and its bytes. The ID is the
// record's key and is not repeated. The relay ID is stored only when it is
// not what RelayQueueID reads from the stored reply. A record that starts
// with '{' is JSON, as written before (decodeArchived reads both). The
// decoder refuses what it cannot account for (a byte past the end, an
// unknown code or flag, bytes left over), so damage is reported as such.

// archiveFormat opens a compact archive record.
const archiveFormat = 1

var (
	archiveFates    = []Fate{FateDelivered, FateDead, FateDeleted}
	archiveStatuses = []Status{StatusQueued, StatusDeferred, StatusDelivered, StatusDead, StatusUncertain}
)

const (
	archiveHasTime = 1 << iota
	archiveHasReply
	archiveHasRelayID
	archiveFlags = archiveHasTime | archiveHasReply | archiveHasRelayID
)

// encodeArchived is the stored form of a.
func encodeArchived(a *Archived) []byte { return encodeArchivedKnowing(a, nil) }

// encodeArchivedKnowing is encodeArchived for a caller that knows the
// relay ID each recipient's stored reply implies (implied[i] is
// impliedRelayID of recipient i), which then is not read again from the
// reply with RelayQueueID's regexps; nil when it does not.
func encodeArchivedKnowing(a *Archived, implied []string) []byte {
	v := []byte{archiveFormat}
	for _, s := range []string{a.From, a.Submitter.Via, a.Submitter.Addr, a.Submitter.User, a.Submitter.Unit} {
		v = appendString(v, s)
	}
	v = binary.AppendVarint(v, int64(a.Submitter.UID))
	v = binary.AppendVarint(v, a.Created.UnixNano())
	v = binary.AppendUvarint(v, uint64(max(a.Size, 0)))
	v = binary.AppendUvarint(v, uint64(max(a.Attempts, 0)))
	v = binary.AppendVarint(v, a.Left.UnixNano()-a.Created.UnixNano())
	v = append(v, codeOf(archiveFates, a.Fate))
	v = binary.AppendUvarint(v, uint64(len(a.Recipients)))
	for i, r := range a.Recipients {
		v = appendString(v, r.Address)
		v = appendString(v, r.Relay)
		v = append(v, codeOf(archiveStatuses, r.Status))
		v = binary.AppendUvarint(v, uint64(max(r.Attempts, 0)))
		var flags byte
		if !r.Time.IsZero() {
			flags |= archiveHasTime
		}
		if r.Reply != nil {
			flags |= archiveHasReply
		}
		var id string
		if implied != nil {
			id = implied[i]
		} else {
			id = impliedRelayID(r.Status, r.Reply)
		}
		if r.RelayID != id {
			flags |= archiveHasRelayID
		}
		v = append(v, flags)
		if flags&archiveHasTime != 0 {
			v = binary.AppendVarint(v, r.Time.UnixNano()-a.Created.UnixNano())
		}
		if r.Reply != nil {
			v = binary.AppendUvarint(v, uint64(max(r.Reply.Code, 0)))
			v = appendString(v, r.Reply.Enhanced)
			v = appendString(v, r.Reply.Stage)
			v = binary.AppendUvarint(v, uint64(len(r.Reply.Lines)))
			for _, line := range r.Reply.Lines {
				v = appendString(v, line)
			}
		}
		if flags&archiveHasRelayID != 0 {
			v = appendString(v, r.RelayID)
		}
	}
	return v
}

// impliedRelayID is the relay ID archive gives a recipient in status s
// whose reply was r, which the record then need not store.
func impliedRelayID(s Status, r *Reply) string {
	if s != StatusDelivered {
		return ""
	}
	return RelayQueueID(r)
}

// decodeArchived reads the archive record v kept under id, compact or JSON.
func decodeArchived(id []byte, v []byte) (*Archived, error) {
	if len(v) > 0 && v[0] == '{' {
		var a Archived
		if err := json.Unmarshal(v, &a); err != nil {
			return nil, err
		}
		return &a, nil
	}
	if len(v) == 0 || v[0] != archiveFormat {
		return nil, errors.New("not an archive record")
	}
	d := &recordReader{v: v[1:]}
	a := &Archived{ID: string(id)}
	a.From = d.string()
	a.Submitter.Via, a.Submitter.Addr, a.Submitter.User, a.Submitter.Unit = d.string(), d.string(), d.string(), d.string()
	a.Submitter.UID = int(d.varint())
	created := d.varint()
	a.Created = time.Unix(0, created).UTC()
	a.Size = int64(d.uvarint())
	a.Attempts = int(d.uvarint())
	a.Left = time.Unix(0, created+d.varint()).UTC()
	a.Fate = codeFor(d, archiveFates)
	n := d.uvarint()
	if n > uint64(len(d.v)) { // each recipient takes bytes: a damaged count
		return nil, errors.New("archive record: bad recipient count")
	}
	for range n {
		r := ArchivedRecipient{Address: d.string(), Relay: d.string()}
		r.Status = codeFor(d, archiveStatuses)
		r.Attempts = int(d.uvarint())
		flags := d.byte()
		if flags&^archiveFlags != 0 {
			d.fail("unknown flags")
		}
		if flags&archiveHasTime != 0 {
			r.Time = time.Unix(0, created+d.varint()).UTC()
		}
		if flags&archiveHasReply != 0 {
			r.Reply = &Reply{Code: int(d.uvarint()), Enhanced: d.string(), Stage: d.string()}
			lines := d.uvarint()
			if lines > uint64(len(d.v)) {
				d.fail("bad line count")
				break
			}
			for range lines {
				r.Reply.Lines = append(r.Reply.Lines, d.string())
			}
		}
		r.RelayID = impliedRelayID(r.Status, r.Reply)
		if flags&archiveHasRelayID != 0 {
			r.RelayID = d.string()
		}
		a.Recipients = append(a.Recipients, r)
	}
	if d.err == nil && len(d.v) > 0 {
		d.fail("bytes left over")
	}
	if d.err != nil {
		return nil, fmt.Errorf("archive record: %w", d.err)
	}
	return a, nil
}

func appendString(v []byte, s string) []byte {
	v = binary.AppendUvarint(v, uint64(len(s)))
	return append(v, s...)
}

// codeOf is the index of x in table, as the byte that stores it.
func codeOf[T comparable](table []T, x T) byte {
	for i, t := range table {
		if t == x {
			return byte(i)
		}
	}
	return 0xff // decodes as damage; archive writes only known values
}

func codeFor[T any](d *recordReader, table []T) T {
	c := d.byte()
	if int(c) >= len(table) {
		d.fail("unknown code")
		var zero T
		return zero
	}
	return table[c]
}

// recordReader reads a compact record; after the first error every read
// returns zero values and err says what went wrong.
type recordReader struct {
	v   []byte
	err error
}

func (d *recordReader) fail(why string) {
	if d.err == nil {
		d.err = errors.New(why)
	}
	d.v = nil
}

func (d *recordReader) byte() byte {
	if len(d.v) == 0 {
		d.fail("truncated")
		return 0
	}
	b := d.v[0]
	d.v = d.v[1:]
	return b
}

func (d *recordReader) uvarint() uint64 {
	x, n := binary.Uvarint(d.v)
	if n <= 0 {
		d.fail("truncated")
		return 0
	}
	d.v = d.v[n:]
	return x
}

func (d *recordReader) varint() int64 {
	x, n := binary.Varint(d.v)
	if n <= 0 {
		d.fail("truncated")
		return 0
	}
	d.v = d.v[n:]
	return x
}

func (d *recordReader) string() string {
	n := d.uvarint()
	if n > uint64(len(d.v)) {
		d.fail("truncated")
		return ""
	}
	s := string(d.v[:n])
	d.v = d.v[n:]
	return s
}
