package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// bbolt's freelist, saved at Close. The queue runs with NoFreelistSync
// (boltOptions): writing the freelist at every commit would cost a queue
// that grows and shrinks 2.4× per delivery once drained, and would need a
// run of contiguous free pages at every commit, which a full disk does not
// have. The price was at Open: bbolt rebuilds the freelist by reading every
// page of the file, and relayq read every page before it (openBolt), 3.2 s
// for a million queued messages with the page cache empty.
//
// So Close writes the freelist once, in a last commit of its own
// (saveFreelist). The next Open finds it (freelistSaved), lets bbolt read it
// instead of walking the file, and checks the pages in the background
// (pagewalk.go). Its first commit frees it again: from then on the file is
// as before, and after a crash (no Close) the next Open walks the file
// before it opens it, as it always did.
//
// bbolt trusts the freelist page it reads: a garbled count makes it read
// past the page (a fault, not a panic: the process dies), and an ID of a
// page in use makes it hand that page out again and overwrite a live
// record or body. Nothing before relayq's walk would see it. So the
// freelist is checked before bbolt reads it (checkFreelist):
//
//   - Its structure, which needs no walk: the page is a freelist page, its
//     count (either form) fits in its pages, its pages lie within the file
//     and below the meta's high-water mark, every ID is ≥ 2, below the
//     high-water mark and greater than the one before.
//   - Its bytes: Close writes a sidecar next to the file (queue.db.freelist:
//     the meta's txid, the freelist's page and the CRC-32C of its bytes),
//     fsynced after the commit that wrote the freelist. Only a sidecar that
//     names the meta's txid and page and matches the bytes lets Open skip
//     the walk (the fast path).
//   - Otherwise Open walks the file first, as after a crash, and then
//     checks the freelist against the pages the walk reached
//     (checkFreelistAgainstPages): no page in use may be listed as free.
//     A freelist that fails any of it makes Open fail with ErrDamaged
//     (errFreelistDamaged says how to recover: `relayq compact`, which opens
//     the file read-only, where bbolt does not read the freelist, and
//     writes a new file without one). A crash between the commit and the
//     sidecar leaves a good freelist that the walk passes.

// saveFreelist has bbolt write its freelist into the file in one last
// commit. A failure (no room for the freelist's pages on a full disk) is
// only logged: the next Open then rebuilds it. A file whose pages were found
// damaged keeps none, so that the next Open walks it and refuses it at once.
// Nothing else may use the database meanwhile (Close has stopped it all).
func (q *Queue) saveFreelist() {
	db := q.db.raw()
	if q.pages.damaged() != nil || !db.NoFreelistSync {
		return // damaged; or bbolt writes it at every commit already
	}
	db.NoFreelistSync = false
	err := db.Update(func(*bolt.Tx) error { return nil })
	db.NoFreelistSync = true
	if err != nil {
		q.log.Warn("cannot save the queue file's freelist; the next start reads the whole file", "err", err)
		return
	}
	if err := writeFreelistSidecar(q.db.Path()); err != nil {
		q.log.Warn("cannot record the queue file's freelist; the next start reads the whole file", "err", err)
	}
}

// freelistSuffix names the sidecar that Close writes next to the queue
// file: what the saved freelist must be for the next Open to trust it.
const freelistSuffix = ".freelist"

// sidecarFormat is the sidecar's one line.
const sidecarFormat = "relayq freelist 1 txid %d page %d crc32c %08x\n"

// writeFreelistSidecar records the saved freelist of the file at path in
// its sidecar: written to a temporary file, fsynced, renamed over the old
// one and the directory fsynced. A crash on the way leaves no sidecar or a
// stale one: the next Open then walks the file.
func writeFreelistSidecar(path string) error {
	fl, err := checkFreelist(path)
	if err != nil {
		return err
	}
	if fl == nil {
		return errors.New("no freelist in the file after saving it")
	}
	tmp := path + freelistSuffix + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(fmtSidecar(fl))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path+freelistSuffix)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// sidecarMatches reports whether the sidecar of the file at path records
// fl: the same meta txid, page and checksum.
func sidecarMatches(path string, fl *savedFreelist) bool {
	b, err := os.ReadFile(path + freelistSuffix)
	if err != nil {
		return false
	}
	return bytes.Equal(b, fmtSidecar(fl))
}

// fmtSidecar is the sidecar's content for fl.
func fmtSidecar(fl *savedFreelist) []byte {
	return fmt.Appendf(nil, sidecarFormat, fl.txid, fl.page, fl.crc)
}

// bbolt's meta page (go.etcd.io/bbolt/internal/common/meta.go), after the
// page's 16-byte header: magic, version, page size, flags (4 bytes each),
// root bucket (root page, sequence), freelist page, high water mark, txid,
// then the FNV-64a checksum of all that (8 bytes each). A page header is
// its ID (8 bytes), flags, count (2 bytes each) and overflow (4 bytes).
const (
	pageHeaderSize   = 16
	pageFlagsAt      = 8
	pageCountAt      = 10
	pageOverflowAt   = 12
	freelistPageFlag = 0x10
	metaMagic        = 0xED0CDAED
	metaVersion      = 2
	metaPageSizeAt   = 8
	metaFreelistAt   = 32
	metaHighAt       = 40
	metaTxidAt       = 48
	metaChecksumAt   = 56
	metaSize         = 64
	noFreelist       = ^uint64(0)
	defaultPageBytes = 4096
)

// freelistSaved reports whether the file at path holds bbolt's freelist:
// whether the meta page bbolt will use (the valid one with the higher
// transaction ID, as bbolt's DB.meta picks it) names a freelist page. Any
// doubt (a meta page that does not read or validate) answers false.
func freelistSaved(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	m, _, ok := readMeta(f)
	return ok && m.freelist != noFreelist
}

type metaPage struct {
	txid, freelist, high uint64
}

// readMeta returns the meta bbolt will use of the file f and its page
// size; ok is false when neither meta page reads and validates.
func readMeta(f *os.File) (m metaPage, pageSize int64, ok bool) {
	first := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(first, 0); err != nil {
		return m, 0, false
	}
	m0, ok0 := parseMeta(first[pageHeaderSize:])
	pageSize = int64(defaultPageBytes)
	if ok0 {
		pageSize = int64(binary.NativeEndian.Uint32(first[pageHeaderSize+metaPageSizeAt:]))
	}
	second := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(second, pageSize); err != nil {
		return m, 0, false
	}
	m1, ok1 := parseMeta(second[pageHeaderSize:])
	newest, older, okNewest, okOlder := m0, m1, ok0, ok1
	if m1.txid > m0.txid {
		newest, older, okNewest, okOlder = m1, m0, ok1, ok0
	}
	switch {
	case okNewest:
		return newest, pageSize, true
	case okOlder:
		return older, pageSize, true
	}
	return m, 0, false
}

// parseMeta reads the meta fields relayq needs from b, and whether the
// page validates as bbolt's Meta.Validate does (magic, version, checksum).
// The txid is read even from one that does not, as bbolt does.
func parseMeta(b []byte) (metaPage, bool) {
	m := metaPage{
		txid:     binary.NativeEndian.Uint64(b[metaTxidAt:]),
		freelist: binary.NativeEndian.Uint64(b[metaFreelistAt:]),
		high:     binary.NativeEndian.Uint64(b[metaHighAt:]),
	}
	h := fnv.New64a()
	h.Write(b[:metaChecksumAt])
	ok := binary.NativeEndian.Uint32(b) == metaMagic && binary.NativeEndian.Uint32(b[4:]) == metaVersion &&
		binary.NativeEndian.Uint64(b[metaChecksumAt:]) == h.Sum64()
	return m, ok
}

// savedFreelist is the freelist the meta of a file names, as read from the
// file and found well-formed by checkFreelist.
type savedFreelist struct {
	txid, page uint64
	ids        []uint64 // ascending
	crc        uint32   // CRC-32C of the page header and the IDs
}

// freelistDamage is what checkFreelist found wrong with a saved freelist.
type freelistDamage struct {
	page uint64
	why  string
}

func (e *freelistDamage) Error() string {
	return fmt.Sprintf("the saved freelist (page %d) is damaged: %s; "+
		"bbolt would hand out pages in use: run `relayq compact` (daemon stopped) to rewrite the file without it", e.page, e.why)
}

func (e *freelistDamage) Is(target error) bool {
	return target == ErrDamaged || target == ErrFreelistDamaged
}

// checkFreelist reads the freelist that the meta of the file at path
// names, without bbolt, and checks what needs no walk of the file: the
// page's flag and count, its pages within the file and below the meta's
// high-water mark, and every ID at least 2, below the high-water mark and
// greater than the one before; and that the file reaches the high-water
// mark (else it is cut short: ErrDamaged, not the freelist's fault). It
// returns nil, nil for a file whose meta names no freelist or does not
// validate (bbolt reports the latter); an error matching ErrDamaged for a
// freelist that fails.
func checkFreelist(path string) (*savedFreelist, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil // bbolt's open says why
	}
	defer f.Close()
	m, pageSize, ok := readMeta(f)
	if !ok || m.freelist == noFreelist {
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) (*savedFreelist, error) {
		return nil, &freelistDamage{page: m.freelist, why: fmt.Sprintf(format, args...)}
	}
	if filePages := uint64(fi.Size()) / uint64(pageSize); m.high > filePages {
		// Not the freelist's fault, and compact cannot mend it.
		return nil, fmt.Errorf("%w: the file is cut short: it ends at page %d, its meta counts %d pages", ErrDamaged, filePages, m.high)
	}
	if m.freelist < 2 || m.freelist >= m.high {
		return bad("the page lies outside the file's pages [2, %d)", m.high)
	}
	head := make([]byte, pageHeaderSize+8)
	if _, err := f.ReadAt(head, int64(m.freelist)*pageSize); err != nil {
		return nil, err
	}
	if flags := binary.NativeEndian.Uint16(head[pageFlagsAt:]); flags != freelistPageFlag {
		return bad("its page is not a freelist page (flags %#x)", flags)
	}
	overflow := uint64(binary.NativeEndian.Uint32(head[pageOverflowAt:]))
	if m.freelist+overflow >= m.high {
		return bad("its %d page(s) run past the high-water mark, page %d", overflow+1, m.high)
	}
	count, skip := uint64(binary.NativeEndian.Uint16(head[pageCountAt:])), uint64(0)
	if count == 0xFFFF { // bbolt's overflow form: the count is the first element
		count, skip = binary.NativeEndian.Uint64(head[pageHeaderSize:]), 1
	}
	room := ((overflow+1)*uint64(pageSize) - pageHeaderSize) / 8
	if count > room || count+skip > room {
		return bad("it counts %d IDs, its %d page(s) hold at most %d", count, overflow+1, room)
	}
	data := make([]byte, pageHeaderSize+8*(skip+count))
	if _, err := f.ReadAt(data, int64(m.freelist)*pageSize); err != nil {
		return nil, err
	}
	fl := &savedFreelist{txid: m.txid, page: m.freelist, ids: make([]uint64, count), crc: crc32.Checksum(data, castagnoli())} // castagnoli: body.go
	prev := uint64(1)
	for i := range fl.ids {
		id := binary.NativeEndian.Uint64(data[pageHeaderSize+8*(skip+uint64(i)):])
		switch {
		case id <= prev:
			return bad("ID %d (entry %d) is not above the one before, %d", id, i, prev)
		case id >= m.high:
			return bad("ID %d (entry %d) is at or past the high-water mark, page %d", id, i, m.high)
		case id >= m.freelist && id <= m.freelist+overflow:
			return bad("ID %d (entry %d) is the freelist's own page", id, i)
		}
		fl.ids[i], prev = id, id
	}
	return fl, nil
}

// checkFreelistAgainstPages checks the saved freelist fl of db, opened
// read-only and walked, against the pages in use: bbolt's check finds no
// page both reachable and free, none freed twice, none lost. checkFreelist
// must have passed fl first: bbolt reads the page as it is.
func checkFreelistAgainstPages(db *bolt.DB, fl *savedFreelist) error {
	var problems []error
	err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(problems) == 0 {
		return nil
	}
	why := "it does not match the pages in use: " + problems[0].Error()
	if len(problems) > 1 {
		why += fmt.Sprintf(" (and %d more)", len(problems)-1)
	}
	return &freelistDamage{page: fl.page, why: why}
}
