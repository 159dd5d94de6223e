package queue

import (
	"encoding/binary"
	"hash/fnv"
	"os"

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

// saveFreelist has bbolt write its freelist into the file in one last
// commit. A failure (no room for the freelist's pages on a full disk) is
// only logged: the next Open then rebuilds it. A file whose pages were found
// damaged keeps none, so that the next Open walks it and refuses it at once.
// Nothing else may use the database meanwhile (Close has stopped it all).
func (q *Queue) saveFreelist() {
	if q.pages.damaged() != nil || !q.db.NoFreelistSync {
		return // damaged; or bbolt writes it at every commit already
	}
	q.db.NoFreelistSync = false
	err := q.db.Update(func(*bolt.Tx) error { return nil })
	q.db.NoFreelistSync = true
	if err != nil {
		q.log.Warn("cannot save the queue file's freelist; the next start reads the whole file", "err", err)
	}
}

// bbolt's meta page (go.etcd.io/bbolt/internal/common/meta.go), after the
// page's 16-byte header: magic, version, page size, flags (4 bytes each),
// root bucket (root page, sequence), freelist page, high water mark, txid,
// then the FNV-64a checksum of all that (8 bytes each).
const (
	pageHeaderSize   = 16
	metaMagic        = 0xED0CDAED
	metaVersion      = 2
	metaFreelistAt   = 32
	metaTxidAt       = 48
	metaChecksumAt   = 56
	metaSize         = 64
	noFreelist       = ^uint64(0)
	defaultPageBytes = 4096
)

// freelistSaved reports whether the file at path holds bbolt's freelist:
// whether the meta page bbolt will use (the valid one with the higher
// transaction ID, as bbolt's DB.meta picks it) names a freelist page. Open
// then needs no walk of the file before bbolt opens it. Any doubt (a meta
// page that does not read or validate) answers false: Open walks the file
// first, as it always did.
func freelistSaved(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	first := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(first, 0); err != nil {
		return false
	}
	m0, ok0 := parseMeta(first[pageHeaderSize:])
	pageSize := int64(defaultPageBytes)
	if ok0 {
		pageSize = int64(binary.NativeEndian.Uint32(first[pageHeaderSize+8:]))
	}
	second := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(second, pageSize); err != nil {
		return false
	}
	m1, ok1 := parseMeta(second[pageHeaderSize:])
	newest, older, okNewest, okOlder := m0, m1, ok0, ok1
	if m1.txid > m0.txid {
		newest, older, okNewest, okOlder = m1, m0, ok1, ok0
	}
	switch {
	case okNewest:
		return newest.freelist != noFreelist
	case okOlder:
		return older.freelist != noFreelist
	}
	return false
}

type metaPage struct {
	txid, freelist uint64
}

// parseMeta reads the meta fields freelistSaved needs from b, and whether
// the page validates as bbolt's Meta.Validate does (magic, version,
// checksum). The txid is read even from one that does not, as bbolt does.
func parseMeta(b []byte) (metaPage, bool) {
	m := metaPage{txid: binary.NativeEndian.Uint64(b[metaTxidAt:]), freelist: binary.NativeEndian.Uint64(b[metaFreelistAt:])}
	h := fnv.New64a()
	h.Write(b[:metaChecksumAt])
	ok := binary.NativeEndian.Uint32(b) == metaMagic && binary.NativeEndian.Uint32(b[4:]) == metaVersion &&
		binary.NativeEndian.Uint64(b[metaChecksumAt:]) == h.Sum64()
	return m, ok
}
