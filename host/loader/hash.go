package loader

import (
	"hash"
	"io"
	"sync"
	"time"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// multiHash hashes what is written to it in every bank, each bank in its
// own goroutine, so that on an idle machine several banks cost little
// more than one (as measure.StreamHasher does for files). Writes are
// copied, since the writer may reuse its buffer.
type multiHash struct {
	banks []pcrbank.Alg
	hs    []hash.Hash
	feeds []chan []byte
	wg    sync.WaitGroup
	// busy is, per bank, the time spent hashing: what the benchmark
	// reports as hashing, since it overlaps the reading.
	busy []time.Duration
}

func newMultiHash(banks []pcrbank.Alg) *multiHash {
	m := &multiHash{banks: banks, busy: make([]time.Duration, len(banks))}
	if len(banks) == 1 {
		// Nothing to overlap with: Write hashes in place, no copy.
		m.hs = []hash.Hash{banks[0].New()}
		return m
	}
	for i, a := range banks {
		h := a.New()
		in := make(chan []byte, 4)
		m.hs, m.feeds = append(m.hs, h), append(m.feeds, in)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for b := range in {
				t := time.Now()
				h.Write(b)
				m.busy[i] += time.Since(t)
			}
		}()
	}
	return m
}

func (m *multiHash) Write(p []byte) (int, error) {
	if len(m.hs) == 0 {
		return len(p), nil
	}
	if m.feeds == nil {
		t := time.Now()
		m.hs[0].Write(p)
		m.busy[0] += time.Since(t)
		return len(p), nil
	}
	b := append([]byte(nil), p...)
	for _, f := range m.feeds {
		f <- b
	}
	return len(p), nil
}

// Sum ends the hashing and returns the digests (nil without banks) and
// the longest time one bank spent hashing.
func (m *multiHash) Sum() (pcrbank.Digests, time.Duration) {
	for _, f := range m.feeds {
		close(f)
	}
	m.wg.Wait()
	var busy time.Duration
	for _, b := range m.busy {
		busy = max(busy, b)
	}
	if len(m.hs) == 0 {
		return nil, 0
	}
	d := make(pcrbank.Digests, len(m.banks))
	for i, a := range m.banks {
		d[a] = m.hs[i].Sum(nil)
	}
	return d, busy
}

// streamed is a measure.Hasher that answers with the digests receive
// computed for the files it wrote; anything else (the empty initrd image
// of an entry without one) is hashed as usual.
type streamed struct {
	known map[string]pcrbank.Digests // by written file path
}

func (s streamed) Hash(algs []pcrbank.Alg, srcs []measure.Source) (pcrbank.Digests, error) {
	if len(srcs) == 1 {
		if f, ok := srcs[0].(namedFile); ok {
			if d, ok := s.known[f.path]; ok && len(d) == len(algs) {
				return d, nil
			}
		}
	}
	return measure.StreamHasher{}.Hash(algs, srcs)
}

var _ io.Writer = (*multiHash)(nil)
