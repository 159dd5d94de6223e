package queue

import (
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt reads the file through a shared, read-only memory map. Every page a
// read touches stays mapped into relayq and counts in its resident set,
// although the kernel keeps it in the page cache anyway: at Open bbolt
// touches every page to rebuild the freelist, and under load the pages of
// messages long delivered stay mapped. So after Open, and then every
// trimInterval, the store tells the kernel it no longer needs those
// mappings (madvise MADV_DONTNEED). Nothing is lost: the mapping is
// read-only (bbolt writes with pwrite), and a page read again is mapped
// again from the page cache. relayq's resident set then stays about its
// heap plus the pages in use, however long the queue.

const trimInterval = 2 * time.Second

// trimMappedPages drops this process's mappings of the file's pages. It
// holds a read transaction, during which bbolt cannot remap the file, so
// the range is the live mapping.
func (q *Queue) trimMappedPages() error {
	return q.db.View(func(tx *bolt.Tx) error {
		return dontNeed(tx.DB().Info().Data, tx.Size())
	})
}

// trimLoop runs trimMappedPages every trimInterval until stop.
func (q *Queue) trimLoop(stop <-chan struct{}) {
	ticker := time.NewTicker(trimInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			if err := q.trimMappedPages(); err != nil {
				q.log.Debug("cannot release mapped pages", "err", err)
			}
		case <-stop:
			return
		}
	}
}

// background is a goroutine the store runs until Close (the history pruner,
// the page trimmer).
type background struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func runBackground(loop func(stop <-chan struct{})) *background {
	b := &background{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		loop(b.stop)
	}()
	return b
}

// halt stops the goroutine and waits for it; a nil background is none.
func (b *background) halt() {
	if b == nil {
		return
	}
	b.once.Do(func() { close(b.stop) })
	<-b.done
}
