package predict

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// KeyedSource is a measure.Source that knows an identity for its bytes:
// two sources with the same key yield the same bytes for the lifetime of
// a CachingHasher.
type KeyedSource interface {
	measure.Source
	CacheKey() string
}

type keyed struct {
	measure.Source
	key string
}

func (k keyed) CacheKey() string { return k.key }

// Keyed tags src with a cache identity.
func Keyed(src measure.Source, key string) measure.Source { return keyed{src, key} }

// CachingHasher hashes each distinct group of sources once per process,
// for pcrsim predicting many guests that share kernels and initrds.
//
// The key of a request is the banks plus the ordered list of its sources'
// keys: the initrds of an entry are measured as one concatenation, so the
// group, not each file, is what has a digest. A source without a key
// bypasses the cache. Concurrent requests for the same key wait for the
// one computation in flight (singleflight), so a shared 16 MiB kernel is
// read once even when 500 guests ask for it at the same moment. Failures
// are not cached: each later request retries.
//
// Safety: Guest.Inputs keys a file as (image device, inode, size, mtime
// in ns from fstat of the open image) + partition offset + path inside
// the filesystem. Within one run that names the same bytes unless the
// image is rewritten while pcrsim reads it, which no prediction survives
// anyway; in theory a same-size rewrite within the filesystem's mtime
// granularity between two guests' reads goes unnoticed (pcrsim
// --no-cache turns the cache off).
type CachingHasher struct {
	// Next computes digests on a miss; nil means measure.StreamHasher{}.
	Next measure.Hasher

	mu       sync.Mutex
	done     map[string]pcrbank.Digests
	inflight map[string]*call

	hits, misses atomic.Int64
}

type call struct {
	wg  sync.WaitGroup
	d   pcrbank.Digests
	err error
}

// Stats reports cache hits and misses (computations) so far.
func (c *CachingHasher) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

func (c *CachingHasher) next() measure.Hasher {
	if c.Next == nil {
		return measure.StreamHasher{}
	}
	return c.Next
}

// Hash implements measure.Hasher.
func (c *CachingHasher) Hash(algs []pcrbank.Alg, srcs []measure.Source) (pcrbank.Digests, error) {
	key, ok := groupKey(algs, srcs)
	if !ok {
		return c.next().Hash(algs, srcs)
	}
	c.mu.Lock()
	if c.done == nil {
		c.done, c.inflight = map[string]pcrbank.Digests{}, map[string]*call{}
	}
	if d, ok := c.done[key]; ok {
		c.mu.Unlock()
		c.hits.Add(1)
		return copyDigests(d), nil
	}
	if cl, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		cl.wg.Wait()
		c.hits.Add(1)
		return copyDigests(cl.d), cl.err
	}
	cl := &call{}
	cl.wg.Add(1)
	c.inflight[key] = cl
	c.mu.Unlock()
	c.misses.Add(1)

	cl.d, cl.err = c.next().Hash(algs, srcs)

	c.mu.Lock()
	delete(c.inflight, key)
	if cl.err == nil {
		c.done[key] = cl.d
	}
	c.mu.Unlock()
	cl.wg.Done()
	return copyDigests(cl.d), cl.err
}

// groupKey is length-prefixed so that no two different lists (a key that
// contains the separator, say) can collide.
func groupKey(algs []pcrbank.Alg, srcs []measure.Source) (string, bool) {
	var b strings.Builder
	for _, a := range algs {
		b.WriteString(a.String())
		b.WriteByte(',')
	}
	b.WriteByte('|')
	for _, s := range srcs {
		k, ok := s.(KeyedSource)
		if !ok {
			return "", false
		}
		ks := k.CacheKey()
		if ks == "" {
			return "", false
		}
		b.WriteString(strconv.Itoa(len(ks)))
		b.WriteByte(':')
		b.WriteString(ks)
	}
	return b.String(), true
}

// copyDigests keeps callers from sharing (and mutating) the cached maps.
func copyDigests(d pcrbank.Digests) pcrbank.Digests {
	if d == nil {
		return nil
	}
	out := make(pcrbank.Digests, len(d))
	for a, v := range d {
		out[a] = append([]byte(nil), v...)
	}
	return out
}
