// Command fsyncrate measures the disk's durable-write ceiling as a mail
// queue sees it: per second, how many times W writers can each create a
// file, write a 5 KB message to it, fsync it and fsync its directory (the
// least work a queue that fsyncs every message does). It prints one JSON
// object: {"writers":W,"ops":N,"seconds":S,"rate":R}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory to write in (on the disk under test)")
	writers := flag.Int("w", 1, "concurrent writers")
	dur := flag.Duration("t", 3*time.Second, "how long to measure")
	size := flag.Int("size", 5120, "bytes per file")
	flag.Parse()
	log.SetPrefix("fsyncrate: ")

	work, err := os.MkdirTemp(*dir, "fsyncrate")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	data := make([]byte, *size)
	var ops atomic.Int64
	deadline := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *writers {
		sub := filepath.Join(work, fmt.Sprint(w))
		if err := os.Mkdir(sub, 0o700); err != nil {
			log.Fatal(err)
		}
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				if err := writeSynced(filepath.Join(sub, fmt.Sprint(i)), data); err != nil {
					log.Fatal(err)
				}
				ops.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	out := map[string]any{"writers": *writers, "ops": ops.Load(), "seconds": secs, "rate": float64(ops.Load()) / secs}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		log.Fatal(err)
	}
}

// writeSynced creates path with data and makes both the file and its
// directory entry durable.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
