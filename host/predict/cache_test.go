package predict

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// countingHasher is the real StreamHasher plus a count of calls, so the
// test sees how often files were actually read.
type countingHasher struct {
	calls atomic.Int64
	gate  chan struct{} // when set, each computation waits on it
}

func (c *countingHasher) Hash(algs []pcrbank.Alg, srcs []measure.Source) (pcrbank.Digests, error) {
	c.calls.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	return measure.StreamHasher{}.Hash(algs, srcs)
}

type failingSource struct{ n *atomic.Int64 }

func (failingSource) Name() string { return "/bad" }
func (f failingSource) Open() (io.ReadCloser, error) {
	f.n.Add(1)
	return nil, errors.New("disk went away")
}

func TestCachingHasherSingleflight(t *testing.T) {
	a, b := bytes.Repeat([]byte("a"), 3<<20), []byte("second")
	group := []measure.Source{Keyed(measure.BytesSource("/a", a), "img@0:a"), Keyed(measure.BytesSource("/b", b), "img@0:b")}
	next := &countingHasher{gate: make(chan struct{})}
	c := &CachingHasher{Next: next}
	s1, s256 := sha1.Sum(append(append([]byte{}, a...), b...)), sha256.Sum256(append(append([]byte{}, a...), b...))

	// 50 concurrent requests for the same group while the first is held
	// in flight: one computation, everyone gets its result.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := c.Hash(pcrbank.DefaultAlgs, group)
			if err == nil && (!bytes.Equal(d[pcrbank.SHA1], s1[:]) || !bytes.Equal(d[pcrbank.SHA256], s256[:])) {
				err = errors.New("wrong digest")
			}
			if err == nil {
				d[pcrbank.SHA1][0] ^= 0xff // must not corrupt the cache
			}
			errs <- err
		}()
	}
	for next.calls.Load() == 0 {
		runtime.Gosched() // until the one computation has started
	}
	close(next.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := next.calls.Load(); n != 1 {
		t.Errorf("%d computations, want 1", n)
	}
	if h, m := c.Stats(); h != 49 || m != 1 {
		t.Errorf("stats %d hits %d misses", h, m)
	}
	// The order of a group is part of its key; a single file is another key.
	if d, _ := c.Hash(pcrbank.DefaultAlgs, []measure.Source{group[1], group[0]}); bytes.Equal(d[pcrbank.SHA1], s1[:]) {
		t.Error("reordered group served from the cache")
	}
	if d, _ := c.Hash(pcrbank.DefaultAlgs, group); !bytes.Equal(d[pcrbank.SHA1], s1[:]) {
		t.Error("cached digest was mutated by a caller")
	}
	// Unkeyed sources bypass the cache.
	before := next.calls.Load()
	c.Hash(pcrbank.DefaultAlgs, []measure.Source{measure.BytesSource("/x", b)})
	c.Hash(pcrbank.DefaultAlgs, []measure.Source{measure.BytesSource("/x", b)})
	if next.calls.Load()-before != 2 {
		t.Error("unkeyed sources were cached")
	}
	// Failures are not cached.
	var opens atomic.Int64
	bad := []measure.Source{Keyed(failingSource{&opens}, "img@0:bad")}
	for range 2 {
		if _, err := c.Hash(pcrbank.DefaultAlgs, bad); err == nil {
			t.Fatal("no error")
		}
	}
	if opens.Load() != 2 {
		t.Errorf("failing source opened %d times, want 2 (errors must not be cached)", opens.Load())
	}
}
