package measure

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Hasher computes, for each bank, the digest of the concatenation of srcs.
// The plan asks for it once per file group; pcrsim substitutes a caching
// Hasher when many guests share files.
type Hasher interface {
	Hash(algs []pcrbank.Alg, srcs []Source) (pcrbank.Digests, error)
}

// StreamHasher reads each source once, in chunks, and feeds every bank's
// hash concurrently from the same buffer: memory stays at a few chunks
// whatever the file size, and two banks cost little more than one.
type StreamHasher struct {
	// ChunkSize defaults to 1 MiB: large enough that per-chunk goroutine
	// hand-offs are noise next to hashing, small enough to stay in cache.
	ChunkSize int
}

const defaultChunk = 1 << 20

// chunksInFlight bounds the buffers a StreamHasher holds: one being read
// while the others are hashed.
const chunksInFlight = 4

func (s StreamHasher) Hash(algs []pcrbank.Alg, srcs []Source) (pcrbank.Digests, error) {
	if len(algs) == 0 {
		return nil, errors.New("hash: no PCR banks")
	}
	chunk := s.ChunkSize
	if chunk <= 0 {
		chunk = defaultChunk
	}
	hashes := make([]hash.Hash, len(algs))
	for i, a := range algs {
		hashes[i] = a.New()
	}
	if len(algs) == 1 {
		// Nothing to overlap with: hash in the reading goroutine.
		buf := make([]byte, chunk)
		for _, src := range srcs {
			if err := copySource(hashes[0], src, buf); err != nil {
				return nil, err
			}
		}
		return collect(algs, hashes), nil
	}

	// Each chunk goes to every hasher; a buffer returns to the pool when
	// all of them are done with it.
	type piece struct {
		b  []byte
		wg *sync.WaitGroup
	}
	pool := make(chan []byte, chunksInFlight)
	for range chunksInFlight {
		pool <- make([]byte, chunk)
	}
	feeds := make([]chan piece, len(hashes))
	var done sync.WaitGroup
	for i, h := range hashes {
		feeds[i] = make(chan piece, chunksInFlight)
		done.Add(1)
		go func(h hash.Hash, in <-chan piece) {
			defer done.Done()
			for p := range in {
				h.Write(p.b)
				p.wg.Done()
			}
		}(h, feeds[i])
	}
	var readErr error
	for _, src := range srcs {
		rc, err := src.Open()
		if err != nil {
			readErr = fmt.Errorf("open %s: %w", src.Name(), err)
			break
		}
		for {
			buf := <-pool
			n, err := io.ReadFull(rc, buf)
			if n > 0 {
				wg := new(sync.WaitGroup)
				wg.Add(len(feeds))
				for _, f := range feeds {
					f <- piece{b: buf[:n], wg: wg}
				}
				go func(buf []byte) { wg.Wait(); pool <- buf[:cap(buf)] }(buf)
			} else {
				pool <- buf
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				readErr = fmt.Errorf("read %s: %w", src.Name(), err)
				break
			}
		}
		rc.Close()
		if readErr != nil {
			break
		}
	}
	for _, f := range feeds {
		close(f)
	}
	done.Wait()
	if readErr != nil {
		return nil, readErr
	}
	return collect(algs, hashes), nil
}

func copySource(w io.Writer, src Source, buf []byte) error {
	rc, err := src.Open()
	if err != nil {
		return fmt.Errorf("open %s: %w", src.Name(), err)
	}
	defer rc.Close()
	if _, err := io.CopyBuffer(w, struct{ io.Reader }{rc}, buf); err != nil {
		return fmt.Errorf("read %s: %w", src.Name(), err)
	}
	return nil
}

func collect(algs []pcrbank.Alg, hashes []hash.Hash) pcrbank.Digests {
	d := make(pcrbank.Digests, len(algs))
	for i, a := range algs {
		d[a] = hashes[i].Sum(nil)
	}
	return d
}

// HashBytes digests a small in-memory value (the command line) in every bank.
func HashBytes(algs []pcrbank.Alg, b []byte) pcrbank.Digests {
	d := make(pcrbank.Digests, len(algs))
	for _, a := range algs {
		h := a.New()
		h.Write(b)
		d[a] = h.Sum(nil)
	}
	return d
}
